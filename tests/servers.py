"""Real servers for tests, each on 127.0.0.1 and a free port, stopped when the test ends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(ready, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if ready():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} was not ready within {timeout_s:g} s")


class ModelServer:
    """llama-cpp-python's OpenAI-compatible server with the bundled model."""

    def __init__(self, process: subprocess.Popen, port: int, api_key: str, log: Path):
        self.process, self.port, self.api_key, self.log = process, port, api_key, log
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


@contextmanager
def model_server(model: Path, log: Path, api_key: str = "team-secret", n_ctx: int = 4096):
    port = free_port()
    handle = open(log, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--api_key", api_key, "--n_ctx", str(n_ctx)],
        stdout=handle, stderr=subprocess.STDOUT, env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    server = ModelServer(process, port, api_key, log)
    try:
        headers = {"Authorization": f"Bearer {api_key}"}
        wait_until(lambda: httpx.get(f"{server.url}/v1/models", headers=headers, timeout=2).status_code == 200,
                   120, "the model server", process)
        yield server
    finally:
        server.stop()
        handle.close()
