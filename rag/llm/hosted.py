"""`HostedModel`: llama.cpp in a model host process, so a native crash costs one answer.

llama.cpp can die in ways Python cannot catch: a CPU instruction the OS does not enable, a
GGUF that passes the header check but breaks in decode, a GPU driver fault, an abort on an
allocation. Inside the window's process any of them would take the window down. Here the
model host (`rag.llm.host`) dies instead; this client notices the closed socket, reports the
signal in plain words, logs the host's last lines of stderr, and starts a new host at once,
so the next question works. Two crashes in a row with layers on the GPU restart it on the CPU.

The stream is the same lean loop as in-process (`InProcessModel.stream`); each piece crosses
the process boundary as one small pickled tuple on a Unix socket.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rag import errors
from rag.children import Child, describe_exit, signal_name
from rag.errors import ModelCrashed, ModelError, ModelInvalid

from .base import Message, StreamStats
from .gguf import WHAT_TO_DO, check_gguf

log = logging.getLogger(__name__)


class _Host(Child):
    """One model host process; the load request is sent at once, its reply read on first use."""

    def __init__(self, params: dict[str, Any]):
        super().__init__("rag.llm.host")
        self.conn.send(("load", params))
        self.loading = True
        self.ended_on_purpose = False  # set by HostedModel.end_host before it kills the process
        self.info: dict[str, Any] = {}
        self.context_size = 0


def _error_from(kind: str, message: str) -> Exception:
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, ModelError):
        return cls(message)
    return ModelError(message)


class HostedModel:
    """A `ChatModel` whose llama.cpp runs in a model host process of its own.

    The host starts on first use (or `warm_up()`), loads the model once and keeps it, with its
    KV cache, across questions. One owner thread calls it, like the model it stands for.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        n_ctx: int = 4096,
        gpu_layers: int | None = None,
        seed: int = 0,
        n_threads: int | None = None,
        flash_attn: bool | None = None,
        expected_sha256: str | None = None,
    ):
        """`expected_sha256`: the host checks the file against it before loading (the bundled
        model's published hash)."""
        if n_ctx < 16:
            raise ValueError(f"n_ctx must be at least 16, not {n_ctx}")
        self.model_path = Path(model_path)
        self.requested_n_ctx = n_ctx
        self.requested_gpu_layers = gpu_layers
        self.seed = seed
        self.n_threads = n_threads
        self.flash_attn = flash_attn
        self.expected_sha256 = expected_sha256
        self.sha256: str | None = None  # set once the host has checked it
        self.last_stats = StreamStats()
        self.crashes = 0  # in a row, reset by a completed answer
        self.on_cpu_after_crashes = False
        self._host: _Host | None = None
        self._last_info: dict[str, Any] = {}
        self._active: Iterator[str] | None = None

    # -- the host's life -----------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        layers = 0 if self.on_cpu_after_crashes else self.requested_gpu_layers
        return {"model_path": str(self.model_path), "n_ctx": self.requested_n_ctx, "gpu_layers": layers,
                "seed": self.seed, "n_threads": self.n_threads, "flash_attn": self.flash_attn,
                "expected_sha256": self.expected_sha256}

    def _start(self) -> _Host:
        check_gguf(self.model_path)  # a clear message for a bad file, before any process starts
        self._host = _Host(self._params())
        return self._host

    def prepare(self) -> None:
        """Start the host and its load now without waiting; a bad file fails here at once."""
        if self._host is None:
            self._start()

    def warm_up(self) -> None:
        host = self._host or self._start()
        if not host.loading:
            return
        try:
            reply = self._recv(host, "loading")
        except ModelCrashed as crash:
            raise ModelInvalid(
                f"{self.model_path} could not be loaded: the model process stopped ({crash.exit}) "
                "while reading it. The file may be damaged, use a model architecture this version "
                f"does not support, or need more memory than is free. {WHAT_TO_DO}"
            ) from None
        if reply[0] != "ok":
            self._drop_host()
            raise _error_from(*reply[1:])
        host.loading = False
        host.context_size = reply[1]["context_size"]
        host.info = self._last_info = reply[1]["info"]
        self.sha256 = reply[1].get("sha256") or self.sha256

    def _drop_host(self) -> None:
        host, self._host = self._host, None
        if host is not None:
            host.end()

    def _recv(self, host: _Host, during: str) -> tuple:
        try:
            return host.conn.recv()
        except (EOFError, OSError):
            raise self._crashed(host, during) from None

    def _crashed(self, host: _Host, during: str) -> ModelCrashed:
        """The host died: log why, start a new one now, and say so in plain words."""
        code = host.exit_status()
        exit = describe_exit(code)
        name = signal_name(code)
        log.error("the model host (pid %s) stopped while %s: %s%s; its last output:\n%s", host.pid, during, exit,
                  f" ({name})" if name else "", host.stderr_tail() or "(nothing)")
        self._host = None
        host.end()
        if during == "loading":
            return ModelCrashed("", exit)
        if host.ended_on_purpose:
            try:
                self._start()
            except ModelError as exc:
                log.error("restarting the model host: %s", exc)
            return ModelCrashed("The model host was ended because it stopped answering; ask again.", exit)
        self.crashes += 1
        on_gpu = (host.info or self._last_info).get("gpu_layers", 0) != 0 and not self.on_cpu_after_crashes
        moved = ""
        if on_gpu and self.crashes >= 2:
            self.on_cpu_after_crashes = True
            moved = " It failed twice in a row on the GPU, so Enclave restarted it on the CPU; ask again."
        what = "answering" if during == "answering" else "reading the question"
        message = (f"The model stopped unexpectedly while {what} ({exit}). "
                   + (moved.strip() if moved else "Enclave restarted it; ask again."))
        try:
            self._start()  # loads in the background; the next question waits for it
        except ModelError as exc:  # the file itself went bad: say so next time
            log.error("restarting the model host: %s", exc)
        return ModelCrashed(message, exit)

    # -- ChatModel -----------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._host is not None and not self._host.loading

    @property
    def host_pid(self) -> int | None:
        """The model host's process id (None before it starts)."""
        return self._host.pid if self._host is not None else None

    def end_host(self) -> bool:
        """From any thread: end the host on purpose (one that stopped answering never reads a
        stop request). The owner's pending read returns as after a crash, but this end is not
        counted as one: two of them must not move the model off the GPU."""
        import os
        import signal

        host = self._host
        if host is None:
            return False
        host.ended_on_purpose = True
        try:
            os.kill(host.pid, signal.SIGKILL)  # the one signal a stopped process acts on at once
        except ProcessLookupError:
            return False
        return True

    @property
    def context_size(self) -> int:
        self.warm_up()
        assert self._host is not None
        return self._host.context_size

    @property
    def info(self) -> dict[str, Any]:
        if self._host is not None and self._host.info:
            return dict(self._host.info)
        # Not loaded yet: None means "all layers if llama.cpp has a GPU backend", which only
        # the host knows (this process never loads llama.cpp).
        return {"where": "this machine", "path": str(self.model_path), "gpu_layers": self._params()["gpu_layers"]}

    def prompt_tokens(self, messages: list[Message]) -> int:
        return self._request(("count", messages), "reading the question")

    def _request(self, message: tuple, during: str) -> Any:
        self.warm_up()
        self._close_active()
        host = self._host
        assert host is not None
        try:
            host.conn.send(message)
        except OSError:
            raise self._crashed(host, during) from None
        reply = self._recv(host, during)
        if reply[0] == "error":
            raise _error_from(*reply[1:])
        return reply[1]

    def stream(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float = 0.0,
        should_stop: Callable[[], bool] | None = None,
        refuse_at: float | None = None,
    ) -> Iterator[str]:
        self.warm_up()
        self._close_active()
        iterator = self._stream(messages, max_tokens, temperature, should_stop, refuse_at)
        self._active = iterator
        return iterator

    def _stream(self, messages, max_tokens, temperature, should_stop, refuse_at=None) -> Iterator[str]:
        host = self._host
        assert host is not None
        conn = host.conn
        self.last_stats = StreamStats()
        try:
            conn.send(("stream", messages, max_tokens, temperature, refuse_at))
        except OSError:
            raise self._crashed(host, "answering") from None
        finished = stopped = False
        try:
            while True:
                if not stopped and should_stop is not None:
                    if should_stop():
                        conn.send(("stop",))
                        stopped = True
                    elif not conn.poll(0.05):  # keep checking should_stop while the host reads
                        continue
                reply = self._recv(host, "answering")
                kind = reply[0]
                if kind == "piece":
                    if not stopped:  # pieces already on their way after a stop are dropped
                        yield reply[1]
                elif kind == "done":
                    finished = True
                    self.last_stats = StreamStats(**reply[1])
                    self.crashes = 0
                    return
                else:
                    finished = True
                    raise _error_from(*reply[1:])
        finally:
            if not finished and self._host is host:
                self._abandon(host, stopped)

    def _abandon(self, host: _Host, stopped: bool) -> None:
        """The consumer closed the stream early: stop the host and read up to its end."""
        try:
            if not stopped:
                host.conn.send(("stop",))
            while True:
                reply = host.conn.recv()
                if reply[0] == "done":
                    self.last_stats = StreamStats(**reply[1])
                    return
                if reply[0] == "error":
                    return
        except (EOFError, OSError):
            self._crashed(host, "answering")

    def _close_active(self) -> None:
        active, self._active = self._active, None
        if active is not None:
            active.close()  # type: ignore[attr-defined]

    def close(self) -> None:
        self._close_active()
        self._drop_host()

