"""The models folder (`<data folder>/models`): catalog entries pulled, files imported, the
lock of their verified hashes, and the fit of each on this machine."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import EnclaveError, ModelNotFound
from rag.llm.bundled import default_model_path
from rag.llm.gguf import check_gguf

from .catalog import CatalogEntry, find_entry, load_catalog
from .download import DownloadFailed, Progress, Pulled, pull_file
from .fit import FITS_GPU, WONT_FIT, Fit, Geometry, Machine, detect_machine, geometry_from_gguf, judge
from .lockfile import LOCK_FILE, Locked, pinned, read_lock, write_lock
from .policy import Policy, PolicyRefused, load_policy

MODELS_DIR = "models"


class ModelWontFit(EnclaveError):
    pass


@dataclass
class Row:
    """One line of the Models page and of `models list`."""

    name: str
    title: str
    source: str  # "bundled", "catalog" or "import"
    path: str  # empty until installed
    size: int
    sha256: str
    allowed: bool
    fit: Fit
    entry: CatalogEntry | None = None
    extra: dict = field(default_factory=dict)

    @property
    def installed(self) -> bool:
        return bool(self.path)

    def to_json(self) -> dict:
        out = {"name": self.name, "title": self.title, "source": self.source, "installed": self.installed,
               "path": self.path, "size_bytes": self.size, "sha256": self.sha256, "allowed": self.allowed,
               **self.fit.to_json()}
        if self.entry is not None:
            e = self.entry
            out.update(family=e.family, parameters=e.parameters, quant=e.quant, repo=e.repo, file=e.file,
                       license=e.license, trained_context=e.context, languages=list(e.languages),
                       hardware=e.hardware, eval_f1=e.eval_f1, refusal_probability=e.refusal_probability)
        return out


class ModelStore:
    def __init__(self, data_dir: str | os.PathLike, *, catalog: list[CatalogEntry] | None = None,
                 policy: Policy | None = None, machine: Machine | None = None):
        self.folder = Path(data_dir) / MODELS_DIR
        self.catalog = catalog if catalog is not None else load_catalog()
        self.policy = policy if policy is not None else load_policy()
        self._given_machine = machine
        self._machine = machine

    @property
    def machine(self) -> Machine:
        if self._machine is None:
            self._machine = detect_machine()
        return self._machine

    def forget_machine(self) -> None:
        """Free memory changes: the next fit reads it again (unless a test fixed the machine)."""
        self._machine = self._given_machine

    @property
    def lock_path(self) -> Path:
        return self.folder / LOCK_FILE

    def locked(self) -> list[Locked]:
        return read_lock(self.lock_path)

    def it_lock(self) -> list[Locked]:
        return read_lock(self.policy.lock_file) if self.policy.lock_file else []

    # --- what is there -------------------------------------------------------------------

    def entry_path(self, entry: CatalogEntry) -> Path | None:
        if entry.bundled:
            try:
                return default_model_path()
            except ModelNotFound:
                return None
        path = self.folder / entry.file
        return path if path.is_file() else None

    def rows(self, n_ctx: int = 4096) -> list[Row]:
        locked = {item.file: item for item in self.locked()}
        rows = []
        for entry in self.catalog:
            path = self.entry_path(entry)
            lock = locked.get(entry.file)
            sha = entry.sha256 or (lock.sha256 if lock else "")
            rows.append(Row(entry.name, entry.title, "bundled" if entry.bundled else "catalog",
                            str(path or ""), path.stat().st_size if path else entry.size_bytes, sha,
                            self._allowed(sha), self._fit(entry, path, n_ctx), entry))
        catalog_files = {e.file for e in self.catalog}
        for item in locked.values():
            path = self.folder / item.file
            if item.file in catalog_files or not path.is_file():
                continue
            rows.append(Row(item.name, item.name, "import", str(path), item.size, item.sha256,
                            self._allowed(item.sha256), self._fit(None, path, n_ctx)))
        return rows

    def _allowed(self, sha: str) -> bool:
        # A model whose hash is not known yet is allowed to be pulled; the hash is checked
        # against the policy before the file is kept.
        return self.policy.allows_sha(sha) if sha else not self.policy.restricts_models

    def _fit(self, entry: CatalogEntry | None, path: Path | None, n_ctx: int) -> Fit:
        if path is not None:
            try:
                geometry = geometry_from_gguf(check_gguf(path))
            except EnclaveError:
                geometry = None
            if geometry is not None and geometry.layers:
                return judge(geometry, self.machine, n_ctx)
        if entry is None:
            return judge(Geometry(path.stat().st_size if path else 0, 1, 1, 1), self.machine, n_ctx)
        return judge(Geometry(entry.size_bytes, entry.layers, entry.kv_heads, entry.head_dim, entry.context),
                     self.machine, n_ctx)

    def fit_of(self, path: str | os.PathLike, n_ctx: int) -> Fit:
        return judge(geometry_from_gguf(check_gguf(path)), self.machine, n_ctx)

    # --- getting models ------------------------------------------------------------------

    def pull(self, name: str, *, on_progress: Callable[[Progress], None] | None = None,
             cancelled: Callable[[], bool] | None = None) -> Pulled:
        entry = find_entry(self.catalog, name)
        if entry is None:
            raise ModelNotFound(f"The catalog has no model named {name!r}. See enclave-cli models list.")
        if entry.bundled:
            raise DownloadFailed(f"{entry.title} is bundled with Enclave; there is nothing to download.")
        self.policy.check_downloads()
        it = pinned(self.it_lock(), entry.repo, entry.file)
        expected, pinned_by = ((it.sha256, f"your administrator's lock file {self.policy.lock_file}") if it
                               else (entry.sha256, "Enclave's catalog"))
        if expected:
            self.policy.check_model(expected, entry.title)
        pulled = pull_file(entry.repo, entry.file, self.folder / entry.file, endpoint=self.policy.hub_endpoint,
                           revision=it.revision if it and it.revision else "main", expected_sha256=expected,
                           pinned_by=pinned_by, on_progress=on_progress, cancelled=cancelled,
                           check_sha=lambda sha: self.policy.check_model(sha, entry.title))
        self._record(Locked(entry.name, entry.file, pulled.size, pulled.sha256, entry.repo, pulled.revision))
        return pulled

    def import_file(self, source: str | os.PathLike) -> Locked:
        """Check a GGUF's header, hash it, and copy it into the models folder (through a
        `.part` file, so a copy cut short is never listed)."""
        source = Path(source).expanduser()
        info = check_gguf(source)  # a clear ModelInvalid for anything that is not a whole GGUF
        digest = hashlib.sha256()
        self.folder.mkdir(parents=True, exist_ok=True)
        name = _import_name(source.name)
        target = self.folder / source.name
        part = self.folder / f".{source.name}.import.part"
        try:
            with open(source, "rb") as src, open(part, "wb") as out:
                while block := src.read(1 << 22):
                    digest.update(block)
                    out.write(block)
            sha = digest.hexdigest()
            self.policy.check_model(sha, source.name)
            it = next((e for e in self.it_lock() if e.file == source.name), None)
            if it is not None and it.sha256 != sha:
                raise PolicyRefused(f"{source.name} has SHA-256 {sha}, not {it.sha256} as your administrator's "
                                    f"lock file {self.policy.lock_file} pins; it was not imported.")
            os.replace(part, target)
        except OSError as exc:
            raise EnclaveError(f"{source} could not be copied into {self.folder} ({exc.strerror or exc}).") from None
        finally:
            part.unlink(missing_ok=True)
        catalog = next((e for e in self.catalog if e.file == source.name), None)
        item = Locked(catalog.name if catalog else name, source.name, info.file_size, sha,
                      catalog.repo if catalog else "", "", "import")
        self._record(item)
        return item

    def _record(self, item: Locked) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        entries = [e for e in self.locked() if e.file != item.file] + [item]
        write_lock(self.lock_path, entries)

    # --- choosing one --------------------------------------------------------------------

    def resolve(self, name_or_path: str) -> tuple[Path, CatalogEntry | None]:
        """A catalog name (installed), an imported model's name, or a GGUF path."""
        entry = find_entry(self.catalog, name_or_path)
        if entry is not None:
            path = self.entry_path(entry)
            if path is None:
                raise ModelNotFound(f"{entry.title} is not downloaded yet: enclave-cli models pull {entry.name}")
            return path, entry
        for item in self.locked():
            if item.name == name_or_path:
                return self.folder / item.file, None
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path.resolve(), next((e for e in self.catalog if e.file == path.name), None)
        raise ModelNotFound(f"No model named {name_or_path!r}: not in the catalog, not imported, not a file. "
                            "See enclave-cli models list.")

    def check_usable(self, path: Path, n_ctx: int, what: str) -> Fit:
        """The policy and the fit, before a model is chosen: a model that will not fit is
        refused here, with the reason, instead of being killed for memory half-loaded."""
        if self.policy.restricts_models:
            self.policy.check_model(self._sha_of(path), what)
        fit = self.fit_of(path, n_ctx)
        if fit.code == WONT_FIT:
            raise ModelWontFit(f"{what} will not fit on this machine: {fit.reason}.")
        return fit

    def _sha_of(self, path: Path) -> str:
        for item in self.locked():
            target = self.folder / item.file
            if target == path and target.is_file() and target.stat().st_size == item.size:
                return item.sha256  # verified when it was pulled or imported
        from rag.llm.bundled import file_sha256

        return file_sha256(path)


def enforce_policy(data_dir: str | os.PathLike, model_path: str | os.PathLike | None, remote: bool,
                   chosen: bool = True) -> Path | None:
    """What the engine checks before it opens a model, returning the GGUF to open.

    A model server only where the policy allows one; the policy's default model where the
    person chose none (`chosen` False: settings name no file); a local file only if its hash
    is on the allowed list (the hash recorded in models.lock when it was pulled or imported,
    else computed now)."""
    policy = load_policy()
    if remote:
        policy.check_remote_server()
        return None
    if not chosen and policy.default_model:
        model_path = ModelStore(data_dir, policy=policy).resolve(policy.default_model)[0]
    if policy.restricts_models and model_path is not None:
        path = Path(model_path)
        policy.check_model(ModelStore(data_dir, catalog=[], policy=policy)._sha_of(path), path.name)
    return Path(model_path) if model_path is not None else None


def check_fit(model_path: str | os.PathLike, n_ctx: int) -> Fit | None:
    """Refuse, with the reason, a model that cannot fit in free memory at this context, before
    llama.cpp maps it: the alternative is a process killed for memory half-loaded. A file
    whose header does not read is left to the model host's own check, which names it."""
    path = Path(model_path)
    try:
        geometry = geometry_from_gguf(check_gguf(path))
    except EnclaveError:
        return None
    fit = judge(geometry, detect_machine(), n_ctx)
    if fit.code == WONT_FIT:
        raise ModelWontFit(f"{path.name} will not fit on this machine: {fit.reason}.")
    return fit


def _import_name(filename: str) -> str:
    stem = filename[:-5] if filename.lower().endswith(".gguf") else filename
    return re.sub(r"[^a-z0-9.]+", "-", stem.lower()).strip("-") or "imported"


__all__ = ["FITS_GPU", "ModelStore", "ModelWontFit", "Row", "check_fit", "enforce_policy"]
