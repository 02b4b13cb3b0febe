"""Pull one GGUF file from the Hugging Face hub, or a company mirror that speaks its protocol.

huggingface_hub does the talking: `hf_hub_url` and `get_hf_file_metadata` resolve the
revision and read the file's size and LFS SHA-256 from the resolve endpoint's headers
(X-Repo-Commit, X-Linked-Size, X-Linked-Etag), and `http_get` streams the bytes, sending a
Range header to resume and reconnecting by itself when a transfer is cut. Its
`hf_hub_download` is not used: since huggingface_hub 1.x (PR #4228) it writes each attempt
to a process-unique temporary file and deletes it on failure, so a download cancelled or
killed is started again from zero. Enclave keeps its own `.part` file in the models folder
instead, and hands its length to `http_get` as `resume_size`.

Every finished file is hashed and compared with what the catalog, IT's lock file or the hub
says it is; a file that differs is removed, never kept.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import EnclaveError, ModelInvalid
from rag.llm.bundled import file_sha256
from rag.llm.gguf import check_gguf

DEFAULT_ENDPOINT = "https://huggingface.co"
SPACE_MARGIN = 64 * 1024**2  # the lock file, the settings, the filesystem's own needs
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
IMPORT_ROUTE = ("Copy the model file to this machine (a USB stick, a share) and run "
                "`enclave-cli models import PATH`, or drop it on the Models page.")


class DownloadFailed(EnclaveError):
    pass


class DownloadCancelled(DownloadFailed):
    """Stopped by the person; the part already downloaded is kept for the next pull."""


class NotEnoughSpace(DownloadFailed):
    pass


class ChecksumMismatch(ModelInvalid):
    pass


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    bytes_per_s: float
    eta_s: float | None


@dataclass(frozen=True)
class Pulled:
    path: Path
    size: int
    sha256: str
    revision: str
    resumed_from: int  # bytes already on disk when this pull began


def hub_endpoint(configured: str = "") -> str:
    """The policy's endpoint, else HF_ENDPOINT (read now, not when huggingface_hub was
    imported), else the public hub."""
    return (configured or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _offline_error(what: str) -> DownloadFailed:
    return DownloadFailed(f"Enclave is offline (HF_HUB_OFFLINE is set), so {what} cannot be downloaded. "
                          + IMPORT_ROUTE)


def _progress_bar(on_progress: Callable[[Progress], None] | None, cancelled: Callable[[], bool] | None):
    """A tqdm stand-in for `http_get`: it reports bytes and raises to cancel between chunks."""

    class Bar:
        def __init__(self, *, total=None, initial=0, **_ignored):
            self.total, self.n = total or 0, initial
            self.start, self.start_n = time.monotonic(), initial
            self._report()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def close(self):
            pass

        def update(self, n: int = 1):
            # http_get counts a chunk before writing it: a cancel raised here loses that one
            # chunk, and every chunk before it is already in the .part file.
            if cancelled is not None and cancelled():
                raise DownloadCancelled("The download was cancelled; what was downloaded is kept, "
                                        "and the next pull resumes from there.")
            self.n += n
            self._report()

        def _report(self):
            if on_progress is None:
                return
            elapsed = time.monotonic() - self.start
            rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.n) / rate if rate > 0 and self.total else None
            on_progress(Progress(self.n, self.total, rate, eta))

    return Bar


def _no_phone_home() -> None:
    """huggingface_hub 2.x builds its User-Agent header from a registry of "AI agent
    harnesses" that it fetches once a day from huggingface.co (the endpoint it read at
    import, not the one Enclave passes): a request to a third party on a company mirror, and
    on every offline laptop's first pull. Enclave contacts only the endpoint the person or
    the policy named, so the registry is set to the library's own empty one first (what the
    library itself uses when the fetch fails). The network guard of the tests caught this."""
    try:
        from huggingface_hub.utils import _detect_agent
    except ImportError:  # another version: nothing of the kind to stop
        return
    if getattr(_detect_agent, "_registry", False) is None:
        _detect_agent._registry = {"standardEnvVars": [], "harnesses": {}}


def pull_file(repo: str, filename: str, dest: Path, *, endpoint: str = "", revision: str = "main",
              expected_sha256: str = "", pinned_by: str = "the catalog",
              on_progress: Callable[[Progress], None] | None = None,
              cancelled: Callable[[], bool] | None = None,
              check_sha: Callable[[str], None] | None = None) -> Pulled:
    """Download `repo`/`filename` to `dest`, resuming a `.part` file left by an earlier try.

    `expected_sha256` (the catalog's or IT's) must match the hub's LFS hash before a byte is
    fetched and the file's own hash after; `check_sha` (the policy) sees the hash first."""
    what = f"{repo}/{filename}"
    if offline():
        raise _offline_error(what)
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError, GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError,
        RevisionNotFoundError,
    )
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    _no_phone_home()
    endpoint = hub_endpoint(endpoint)
    url = hf_hub_url(repo, filename, revision=revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, timeout=15)
    except OfflineModeIsEnabled:
        raise _offline_error(what) from None
    except GatedRepoError:
        raise DownloadFailed(f"{repo} on {endpoint} needs an account that accepted its licence "
                             "(set HF_TOKEN). " + IMPORT_ROUTE) from None
    except RepositoryNotFoundError:
        raise DownloadFailed(f"The repository {repo} does not exist on {endpoint}.") from None
    except RevisionNotFoundError:
        raise DownloadFailed(f"{repo} on {endpoint} has no revision {revision!r}.") from None
    except EntryNotFoundError:
        raise DownloadFailed(f"{repo} on {endpoint} has no file {filename}.") from None
    except HfHubHTTPError as exc:
        raise DownloadFailed(f"The model hub {endpoint} refused {what} ({exc}).") from None
    except Exception as exc:  # httpx's connection and timeout errors, DNS, TLS
        raise DownloadFailed(f"Enclave could not reach the model hub {endpoint} ({type(exc).__name__}: "
                             f"{exc}). Check the network, or if this machine is offline: " + IMPORT_ROUTE) from None
    if not meta.commit_hash or meta.size is None:
        raise DownloadFailed(f"{endpoint} did not answer as a model hub does (no X-Repo-Commit or size "
                             f"for {what}). Check HF_ENDPOINT or the policy's hub_endpoint.")
    size = meta.size
    hub_sha = (meta.etag or "").lower() if _SHA256.match((meta.etag or "").lower()) else ""
    expected = expected_sha256.lower()
    if expected and hub_sha and hub_sha != expected:
        raise ChecksumMismatch(
            f"The hub's {what} has SHA-256 {hub_sha}, not {expected} as {pinned_by} pins; it was not "
            "downloaded. The file was changed on the hub, or the mirror serves another file.")
    expected = expected or hub_sha
    if expected and check_sha is not None:
        check_sha(expected)

    dest.parent.mkdir(parents=True, exist_ok=True)
    part_dir = dest.parent / ".partial"
    part_dir.mkdir(exist_ok=True)
    part = part_dir / f"{expected or meta.commit_hash + '-' + filename}.part"
    have = part.stat().st_size if part.exists() else 0
    if have > size:  # not a prefix of this file: start again
        part.unlink()
        have = 0
    free = shutil.disk_usage(part_dir).free
    if size - have + SPACE_MARGIN > free:
        raise NotEnoughSpace(
            f"{what} needs {(size - have) / 1e9:.2f} GB more and {part_dir.parent} has "
            f"{free / 1e9:.2f} GB free. Free some space, or move the data folder (ENCLAVE_DATA_DIR).")
    try:
        with open(part, "ab") as handle:
            http_get(meta.location, handle, resume_size=have, expected_size=size,
                     headers=build_hf_headers(library_name="enclave"),
                     tqdm_class=_progress_bar(on_progress, cancelled))
    except DownloadCancelled:
        raise
    except OSError as exc:
        if getattr(exc, "errno", None) == errno.ENOSPC:
            raise NotEnoughSpace(f"The disk filled up while downloading {what}; {part.stat().st_size / 1e9:.2f} GB "
                                 "are kept for the next pull. Free some space and pull again.") from None
        if isinstance(exc, HfHubHTTPError) or "Consistency check failed" in str(exc):
            part.unlink(missing_ok=True)  # the server's bytes do not add up: do not build on them
            raise DownloadFailed(f"The download of {what} from {endpoint} failed ({exc}). Pull again.") from None
        raise DownloadFailed(f"The download of {what} was interrupted ({type(exc).__name__}: {exc}); "
                             "pull again to resume it.") from None
    except Exception as exc:  # connection lost after http_get's own retries
        raise DownloadFailed(f"The download of {what} was interrupted ({type(exc).__name__}: {exc}); "
                             "pull again to resume it.") from None

    sha = file_sha256(part)
    if expected and sha != expected:
        part.unlink(missing_ok=True)
        raise ChecksumMismatch(
            f"The downloaded {what} has SHA-256 {sha}, not {expected} as {pinned_by if expected_sha256 else 'the hub'} "
            "says; it was damaged or altered on the way and has been removed.")
    try:
        if check_sha is not None and not expected:
            check_sha(sha)
        check_gguf(part)
    except EnclaveError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return Pulled(dest, size, sha, meta.commit_hash, have)
