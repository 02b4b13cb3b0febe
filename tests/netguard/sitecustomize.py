"""Loaded by every Python subprocess a test starts (PYTHONPATH): the same network guard.

Any connection to a non-loopback address or lookup of a non-local name is refused and
appended to $ENCLAVE_NETGUARD_LOG, which the test reads afterwards.
"""

import ipaddress
import os
import socket

_log = os.environ.get("ENCLAVE_NETGUARD_LOG")
_LOCAL = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def _loopback(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host in _LOCAL:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _record(what: str) -> None:
    if _log:
        with open(_log, "a") as handle:
            handle.write(f"{os.getpid()} {what}\n")


_connect, _connect_ex, _getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo


def _check(sock, address):
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
        _record(f"connect {address!r}")
        raise ConnectionRefusedError(f"network guard: {address!r}")


def connect(self, address):
    _check(self, address)
    return _connect(self, address)


def connect_ex(self, address):
    _check(self, address)
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if not _loopback(host):
        _record(f"lookup {host!r}")
        raise socket.gaierror(socket.EAI_NONAME, f"network guard: {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
