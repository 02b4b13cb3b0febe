"""Watched folders: changes on disk are debounced, then reported once per folder.

QFileSystemWatcher reports a folder whose entries changed (a file added or deleted) and a
file whose content changed. Bursts (a copy of many files, an editor's save dance) arrive as
many events; a single-shot timer restarted by each event waits for quiet before reporting.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal, Slot


log = logging.getLogger(__name__)

DEBOUNCE_MS = 1000
MAX_WATCHED_FILES = 2000
WATCH_FILE = "watched-folders.json"


class FolderWatcher(QObject):
    folder_changed = Signal(str, str)  # folder, collection

    def __init__(self, data_dir: Path, parent=None, debounce_ms: int = DEBOUNCE_MS):
        super().__init__(parent)
        self._store = Path(data_dir) / WATCH_FILE
        self._folders: dict[str, str] = {}  # folder -> collection
        self._dirty: set[str] = set()
        self._watcher = QFileSystemWatcher(self)
        self._watcher.directoryChanged.connect(self._on_path_changed)
        self._watcher.fileChanged.connect(self._on_path_changed)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(debounce_ms)
        self._timer.timeout.connect(self._on_quiet)

    def folders(self) -> dict[str, str]:
        return dict(self._folders)

    def load(self) -> dict[str, str]:
        """Folders watched in an earlier session (those still on disk)."""
        try:
            saved = json.loads(self._store.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        for folder, collection in saved.items():
            if os.path.isdir(folder):
                self.watch(folder, collection, save=False)
        return self.folders()

    def watch(self, folder: str, collection: str, save: bool = True) -> None:
        folder = str(Path(folder).resolve())
        self._folders[folder] = collection
        self.refresh(folder)
        if save:
            self._save()

    def unwatch_collection(self, collection: str) -> None:
        for folder in [f for f, c in self._folders.items() if c == collection]:
            del self._folders[folder]
        self._rewatch_all()
        self._save()

    def rename_collection(self, old: str, new: str) -> None:
        for folder, collection in self._folders.items():
            if collection == old:
                self._folders[folder] = new
        self._save()

    def refresh(self, folder: str) -> None:
        """Watch the folder, its subfolders and files as they are now (after a change)."""
        paths = []
        for root, dirs, names in os.walk(folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            paths.append(root)
            paths += [os.path.join(root, n) for n in names if not n.startswith(".")]
            if len(paths) > MAX_WATCHED_FILES:
                log.warning("watching only the first %d entries under %s", MAX_WATCHED_FILES, folder)
                break
        known = set(self._watcher.files()) | set(self._watcher.directories())
        new = [p for p in paths if p not in known]
        if new:
            self._watcher.addPaths(new)

    def _rewatch_all(self) -> None:
        old = self._watcher.files() + self._watcher.directories()
        if old:
            self._watcher.removePaths(old)
        for folder in self._folders:
            self.refresh(folder)

    def _save(self) -> None:
        tmp = self._store.with_suffix(".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(self._folders, indent=1))
            os.replace(tmp, self._store)
        except OSError:
            log.exception("could not save the watched folders")

    @Slot(str)
    def _on_path_changed(self, path: str) -> None:
        for folder in self._folders:
            if path == folder or path.startswith(folder.rstrip(os.sep) + os.sep):
                self._dirty.add(folder)
        self._timer.start()  # restart: wait for quiet

    @Slot()
    def _on_quiet(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for folder in sorted(dirty):
            if folder in self._folders:
                if os.path.isdir(folder):
                    self.refresh(folder)
                self.folder_changed.emit(folder, self._folders[folder])
