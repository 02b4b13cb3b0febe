"""One writer per data folder: an advisory lock that the kernel drops when its process dies.

flock(2) needs no stale-lock cleanup: a killed writer's lock vanishes with its process. The
holder writes its PID and command into the lock file so a refused process can say who
holds the index.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from .errors import IndexLocked

LOCK_FILE = "writer.lock"


class WriterLock:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise IndexLocked(
                f"The index in {self.path.parent} is in use by {holder}. "
                "Close that Enclave window or command, or wait for it to finish."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({' '.join(sys.argv)[:120]})".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
