"""Helpers for Enclave's child processes (the model host, the window's engine process)."""

from __future__ import annotations

import os
import signal
import sys


def die_with_parent() -> None:
    """In a child: if the parent is killed, the kernel ends this process too (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the parent is already gone
            os._exit(0)


def describe_exit(returncode: int | None) -> str:
    """'signal 11' for a process killed by a signal, else 'exit code N'."""
    if returncode is None:
        return "no exit status"
    if returncode < 0:
        return f"signal {-returncode}"
    return f"exit code {returncode}"


def signal_name(returncode: int | None) -> str:
    """'SIGSEGV' for a process killed by signal 11, else ''."""
    if returncode is not None and returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            pass
    return ""


class Child:
    """A Python child process (`python -m MODULE FD ARGS...`) with a socket to talk over.

    Its stderr is read by a thread that keeps the last lines (for the log when it dies) and,
    with `echo`, copies them to this process's stderr. Ended when dropped, at the latest.
    """

    def __init__(self, module: str, *args: str, echo: bool = False, keep_lines: int = 40):
        import socket
        import subprocess
        import threading
        import weakref
        from collections import deque
        from multiprocessing.connection import Connection

        parent, child = socket.socketpair()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", module, str(child.fileno()), *args],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, close_fds=True,
            )
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        self.stderr: deque[str] = deque(maxlen=keep_lines)
        self._echo = echo
        self._drain = threading.Thread(target=self._read_stderr, name=f"{module}-stderr", daemon=True)
        self._drain.start()
        self._finalizer = weakref.finalize(self, _end, self.process, self.conn)

    def _read_stderr(self) -> None:
        stream = self.process.stderr
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr.append(line)
            if self._echo:
                print(line, file=sys.stderr, flush=True)
        stream.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_status(self, wait_s: float = 5.0) -> int | None:
        """Wait briefly for a child whose socket closed; kill one that hangs on."""
        import subprocess

        try:
            return self.process.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def stderr_tail(self) -> str:
        self._drain.join(timeout=1)
        return "\n".join(self.stderr)

    def end(self) -> None:
        """Ask it to quit, wait a little, then kill it."""
        self._finalizer()


def _end(process, conn, wait_s: float = 3.0) -> None:
    import subprocess

    try:
        conn.send(("quit",))
    except OSError:
        pass
    try:
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    conn.close()
