"""The guard itself: it must catch what it claims to, in this process and in subprocesses."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests import conftest


def test_in_process_connections_and_lookups_off_the_machine_are_refused():
    before = len(conftest._violations)
    with pytest.raises(ConnectionRefusedError):
        socket.socket().connect(("192.0.2.1", 443))  # TEST-NET-1, never routed
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 443), timeout=1)
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("huggingface.co", 443)
    assert len(conftest._violations) == before + 3
    del conftest._violations[before:]  # expected here: do not fail this test for them
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    socket.create_connection(server.getsockname(), timeout=1).close()  # loopback is allowed
    server.close()


def test_subprocesses_carry_the_guard():
    log = conftest.NETGUARD_LOG
    before = log.read_text() if log.exists() else ""
    code = "import socket\ntry:\n socket.create_connection(('192.0.2.1', 443), timeout=1)\nexcept OSError:\n print('refused')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "refused"
    after = log.read_text()
    assert "192.0.2.1" in after[len(before):]
    log.write_text(before)  # expected here: do not fail this test for it
