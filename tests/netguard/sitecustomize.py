"""The network guard: refuses connections to non-loopback addresses and lookups of
non-local names, and records each attempt.

Every Python subprocess a test starts loads this file as `sitecustomize` (tests/conftest.py
puts this folder on PYTHONPATH) and records into $ENCLAVE_NETGUARD_LOG; the test process
itself imports it under another name and calls `install()` with its own recorder.
"""

import ipaddress
import os
import socket

_LOCAL = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def is_loopback(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOCAL:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install(record) -> None:
    """Patch socket so every off-machine attempt calls record(what) and then fails."""
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
    )

    def check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            record(f"connect to {address!r}")
            raise ConnectionRefusedError(f"network guard: connection to {address!r} refused")

    def connect(self, address):
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not is_loopback(host):
            record(f"DNS lookup of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"network guard: lookup of {host!r} refused")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo


def _record_to_log(what: str) -> None:
    log = os.environ.get("ENCLAVE_NETGUARD_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {what}\n")


if __name__ == "sitecustomize":
    install(_record_to_log)
