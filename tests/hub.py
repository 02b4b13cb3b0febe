"""A stand-in for the Hugging Face hub on 127.0.0.1, speaking the protocol huggingface_hub's
downloads use (huggingface_hub/file_download.py, `get_hf_file_metadata` and `http_get`):

* `HEAD|GET /{repo}/resolve/{revision}/{file}`: a 302 to the "CDN" with X-Repo-Commit,
  ETag, X-Linked-Etag (the LFS SHA-256) and X-Linked-Size, as the hub answers for an LFS file;
  unknown repositories, revisions and files get 404 with the hub's X-Error-Code.
* `HEAD|GET /cdn/{sha256}`: the bytes, with Accept-Ranges, Content-Length, and 206 with
  Content-Range for `Range: bytes=N-`.

The CDN is addressed as `localhost` while the hub is `127.0.0.1`: two host names, as on the
real hub (huggingface.co redirects to a CDN host), so the client stops at the redirect and
reads the metadata from it instead of following it.

Knobs for the failures the tests need: `cut_at` (the first GET sends that many bytes and
drops the connection), `corrupt` (serve other bytes under the advertised hash), `fail_cdn`.
Every request is recorded in `requests` as (method, path, Range header).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_CHUNK = 1 << 20


@dataclass
class HostedFile:
    path: Path
    size: int
    sha256: str


@dataclass
class StandInHub:
    files: dict[tuple[str, str], HostedFile] = field(default_factory=dict)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    cut_at: int | None = None  # the first body GET stops after this many bytes
    corrupt: bool = False
    fail_cdn: int | None = None  # status code for every CDN request
    # The first body GET pauses after `gate_after` bytes until `gate` is set: a download that
    # is certainly still running when a test presses Cancel, without timing anything.
    gate: threading.Event | None = None
    gate_after: int = 0
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, repo: str, filename: str, path: Path, sha256: str | None = None) -> HostedFile:
        if sha256 is None:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
            sha256 = digest.hexdigest()
        hosted = HostedFile(Path(path), Path(path).stat().st_size, sha256)
        self.files[(repo, filename)] = hosted
        return hosted

    def ranges(self) -> list[str]:
        return [r for m, p, r in self.requests if m == "GET" and p.startswith("/cdn/") and r]


def _handler(hub: StandInHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet: pytest shows failures, not access logs
            pass

        def do_HEAD(self):
            self._serve(body=False)

        def do_GET(self):
            self._serve(body=True)

        def _error(self, status: int, code: str | None, message: str):
            data = message.encode()
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", message)
            self.send_header("X-Repo-Commit", COMMIT) if code == "EntryNotFound" else None
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _serve(self, body: bool):
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            path = self.path.split("?")[0]
            if path.startswith("/cdn/"):
                return self._cdn(path[len("/cdn/"):], body)
            if "/resolve/" not in path:
                return self._error(404, None, "not found")
            repo, rest = path.lstrip("/").split("/resolve/", 1)
            revision, _, filename = rest.partition("/")
            known_repo = any(r == repo for r, _ in hub.files)
            if not known_repo:
                return self._error(401, "RepoNotFound", "Repository not found")
            if revision not in ("main", COMMIT):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            hosted = hub.files.get((repo, filename))
            if hosted is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{hub.port}/cdn/{hosted.sha256}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", '"8b1a9953c4611296a827abf8c47804d7e6c49c6b"')  # the LFS pointer's git oid
            self.send_header("X-Linked-Etag", f'"{hosted.sha256}"')
            self.send_header("X-Linked-Size", str(hosted.size))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _cdn(self, sha: str, body: bool):
            hosted = next((h for h in hub.files.values() if h.sha256 == sha), None)
            if hosted is None:
                return self._error(404, None, "no such object")
            if hub.fail_cdn:
                return self._error(hub.fail_cdn, None, "storage unavailable")
            start = 0
            wanted = self.headers.get("Range")
            if wanted:
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= hosted.size:
                    return self._error(416, None, "range not satisfiable")
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{hosted.size - 1}/{hosted.size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(hosted.size - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", f'"{hosted.sha256}"')
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if not body:
                return
            limit = hosted.size
            if hub.cut_at is not None and not wanted:
                limit, hub.cut_at = hub.cut_at, None  # once: the retry gets the rest
            with open(hosted.path, "rb") as handle:
                handle.seek(start)
                sent = start
                while sent < limit:
                    block = handle.read(min(_CHUNK, limit - sent))
                    if not block:
                        break
                    if hub.corrupt and sent == start:
                        block = bytes([block[0] ^ 0xFF]) + block[1:] if start > 8 else block[:8] + bytes(
                            [block[8] ^ 0xFF]) + block[9:]
                    self.wfile.write(block)
                    sent += len(block)
                    if hub.gate is not None and not wanted and sent >= hub.gate_after:
                        self.wfile.flush()
                        gate, hub.gate = hub.gate, None
                        gate.wait(60)
            if limit < hosted.size:
                self.wfile.flush()
                self.close_connection = True  # a transfer cut mid-file

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that hangs up mid-file (a cancel, a full disk) is a case under test, not
        # a server fault: no traceback on stderr, which the CLI tests read.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class running_hub:
    """`with running_hub() as hub:` a stand-in hub on a free port, stopped afterwards."""

    def __init__(self):
        self.hub = StandInHub()
        self.server = _Server(("127.0.0.1", 0), _handler(self.hub))
        self.hub.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="stand-in-hub", daemon=True)

    def __enter__(self) -> StandInHub:
        self.thread.start()
        return self.hub

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        return False


# --- fixtures ---------------------------------------------------------------------------

import pytest  # noqa: E402

TEST_REPO = "enclave-test/SmolLM2-135M-Instruct-GGUF"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def write_catalog(path: Path, sha256: str, **extra: str) -> Path:
    """A catalog whose one downloadable entry, smol-test, is the bundled GGUF on the stand-in."""
    lines = ["[[model]]", 'name = "smol-test"', 'title = "SmolLM2 135M (stand-in hub)"', 'family = "SmolLM2"',
             'parameters = "135M"', "params_b = 0.135", 'quant = "Q4_1"', "size_mb = 98.4",
             f'repo = "{TEST_REPO}"', f'file = "{BUNDLED_FILE}"', f'sha256 = "{sha256}"',
             'license = "Apache-2.0"', "context = 8192", "layers = 30", "kv_heads = 3", "head_dim = 64"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def no_policy(tmp_path, monkeypatch):
    """No fleet policy unless a test writes one: a machine's real /etc/enclave is not read."""
    path = tmp_path / "policy.toml"
    monkeypatch.setenv("ENCLAVE_POLICY_FILE", str(path))
    return path


@pytest.fixture
def hub(monkeypatch, tmp_path, no_policy):
    """The stand-in hub, serving the bundled GGUF; HF_ENDPOINT points at it and downloads are
    allowed for this test only (the suite runs with HF_HUB_OFFLINE=1, which huggingface_hub
    reads once at import, hence the constant too)."""
    import huggingface_hub.constants as constants

    from rag.llm.bundled import DEFAULT_MODEL_SHA256, default_model_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token from this machine's files
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("ENCLAVE_CATALOG_FILE", str(write_catalog(tmp_path / "catalog.toml", DEFAULT_MODEL_SHA256)))
    with running_hub() as stand_in:
        stand_in.add(TEST_REPO, BUNDLED_FILE, default_model_path(), DEFAULT_MODEL_SHA256)
        monkeypatch.setenv("HF_ENDPOINT", stand_in.url)
        yield stand_in
