"""The native network guard: runs a command under strace and lists every attempt to reach
past this machine, whoever makes it (Python, a C extension, a thread of a native library).

The Python guard (sitecustomize.py) patches `socket`, so it cannot see a lookup made inside
a native library; the kernel sees every one. Counted as an attempt, successful or not:

- a connect, sendto, sendmsg or sendmmsg to an AF_INET/AF_INET6 address that is not loopback;
- anything to port 53 (a DNS query), loopback included: a local resolver forwards it;
- a host name lookup handed to a name-service daemon: a hosts request to nscd, or any
  connect to systemd-resolved's or avahi's socket (glibc resolves names through them when
  they run; nscd also answers user and group lookups, which stay on the machine).

Run any command under it (a new dependency's first run, say):

    .venv/bin/python -m tests.netguard.native -- .venv/bin/enclave-cli index ~/Documents

It prints each attempt and exits 1 if there was one.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SYSCALLS = ("connect", "sendto", "sendmsg", "sendmmsg")
# Sockets that exist only to resolve host names.
RESOLVER_SOCKETS = ("/run/systemd/resolve/io.systemd.Resolve", "/run/avahi-daemon/socket")
NSCD_SOCKETS = ("/var/run/nscd/socket", "/run/nscd/socket")
# glibc's nscd request types (nscd/nscd-client.h) that resolve hosts: GETHOSTBYNAME(v6),
# GETHOSTBYADDR(v6), GETFDHST, GETAI. Passwd and group requests are local.
NSCD_HOST_REQUESTS = {4: "GETHOSTBYNAME", 5: "GETHOSTBYNAMEv6", 6: "GETHOSTBYADDR", 7: "GETHOSTBYADDRv6",
                      13: "GETFDHST", 14: "GETAI"}

# `12345<python> connect(8<UDP:[...]>, {...}, 16) = 0`; with -f every line starts with the
# thread's id, with -Y its command name. A call split by another thread's line ends in
# "<unfinished ...>" and carries all its arguments; its "<... resumed>" half is skipped.
_CALL = re.compile(r"^(?P<pid>\d+)(?:<(?P<comm>[^>]*)>)?\s+(?P<call>" + "|".join(SYSCALLS) + r")\((?P<args>.*)$")
_EXECVE = re.compile(r'^\d+(?:<[^>]*>)?\s+execve\("(?:[^"\\]|\\.)*", '
                     r'\[(?P<argv>(?:"(?:[^"\\]|\\.)*"(?:\.\.\.)?(?:, )?)*)')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
# Strings that are addresses, not data: everything else (payloads) is blanked before
# addresses are looked for, so a document's text can never pass for one.
_ADDRESS_STRING_BEFORE = ("sun_path=", "sun_path=@", "inet_addr(", "AF_INET6, ")
_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]*)"\)')
_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\)[^}]*?inet_pton\(AF_INET6, "([^"]*)"')
_UNIX = re.compile(r'sa_family=AF_UNIX, sun_path=@?"([^"]*)"')
# -yy shows a connected socket's ends: 8<UDP:[10.0.0.2:41234->10.0.0.1:53]>, <TCPv6:[[::1]:80->[::1]:5432]>
_SOCKET = re.compile(r"<(?:TCP|UDP|UDPLITE|SCTP|MPTCP|RAW|PING)(?:v6)?:\[(.*?)\]>")


@dataclass(frozen=True)
class Attempt:
    pid: int
    command: str
    call: str
    target: str  # "10.255.255.53:53", "/var/run/nscd/socket"
    why: str  # "DNS query for example.com", "connection off the machine", ...
    line: str

    def __str__(self) -> str:
        return f"{self.why}: {self.call} to {self.target} by {self.command or 'pid'} {self.pid}"


def strace_command(log: Path) -> list[str]:
    """The strace invocation: every thread of every child process (-f), only the calls that
    send and the programs started (--seccomp-bpf stops the tracee for those alone), sockets
    decoded (-yy), command names (-Y), and enough of each payload to read a DNS query's
    name (-s 256)."""
    return ["strace", "-f", "-qq", "-Y", "-yy", "-s", "256", "--seccomp-bpf",
            "-e", "trace=" + ",".join((*SYSCALLS, "execve")), "-o", str(log)]


def run(command: list[str], log: Path, **popen) -> subprocess.CompletedProcess:
    """Run `command` under strace, writing the trace to `log`. Raises FileNotFoundError when
    strace is not installed (`make privacy-tools` installs it)."""
    if shutil.which("strace") is None:
        raise FileNotFoundError("strace is not installed; `make privacy-tools` (or apt-get install strace) installs it")
    return subprocess.run(strace_command(log) + ["--", *command], **popen)


def attempts(log: Path | str) -> list[Attempt]:
    """Every attempt to reach past the machine in a trace written by `run`."""
    found: list[Attempt] = []
    nscd: set[tuple[int, int]] = set()  # (thread, fd) of sockets connected to nscd
    with open(log, errors="replace") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            match = _CALL.match(line)
            if match is not None:
                found.extend(_judge(match, line, nscd))
    return found


def programs(log: Path | str) -> list[list[str]]:
    """The command line of every program the traced command started (itself included), so a
    test can tell that the trace covered the processes it meant to watch."""
    started = []
    with open(log, errors="replace") as handle:
        for line in handle:
            match = _EXECVE.match(line)
            if match is not None:
                started.append([s[1:-1] for s in _STRING.findall(match["argv"])])
    return started


def _judge(match: re.Match, line: str, nscd: set[tuple[int, int]]) -> list[Attempt]:
    call, args = match["call"], match["args"]
    pid, comm = int(match["pid"]), match["comm"] or ""
    fd = int(args.split("<", 1)[0].split(",", 1)[0]) if args[:1].isdigit() else -1
    payloads = list(_strings(args, payload=True))
    addresses = _blank_payloads(args)
    out = []

    def attempt(target: str, why: str) -> None:
        out.append(Attempt(pid, comm, call, target, why, line))

    endpoints = [(host, int(port)) for port, host in _INET.findall(addresses)]
    endpoints += [(host, int(port)) for port, host in _INET6.findall(addresses)]
    endpoints += [_endpoint(ends.split("->")[1]) for ends in _SOCKET.findall(addresses) if "->" in ends]
    for host, port in dict.fromkeys(endpoints):
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if port == 53:
            name = next((n for n in map(_dns_name, payloads) if n), None)
            attempt(target, f"DNS query for {name}" if name else "DNS query")
        elif not _is_local(host):
            attempt(target, "connection off the machine")
    paths = _UNIX.findall(addresses)
    if call == "connect":
        nscd.discard((pid, fd))
        if any(path in NSCD_SOCKETS for path in paths):
            nscd.add((pid, fd))  # judged by the request it sends
    for path in paths:
        if path in RESOLVER_SOCKETS:
            attempt(path, "host name lookup through a resolver daemon")
    if call != "connect" and (pid, fd) in nscd and payloads:
        request = _nscd_request(payloads[0])
        if request is not None and request[0] in NSCD_HOST_REQUESTS:
            kind, key = request
            attempt(NSCD_SOCKETS[0], f"host name lookup through nscd ({NSCD_HOST_REQUESTS[kind]} {key})")
    return out


def _nscd_request(escaped: str) -> tuple[int, str] | None:
    """(request type, key) of an nscd request: three native ints (version, type, key
    length), then the key."""
    packet = _unescape(escaped)
    if packet is None or len(packet) < 12:
        return None
    kind = int.from_bytes(packet[4:8], sys.byteorder)
    return kind, packet[12:].split(b"\0", 1)[0].decode("ascii", "replace")


def _unescape(escaped: str) -> bytes | None:
    """The bytes behind strace's C-escaped copy of a buffer."""
    try:
        return codecs.escape_decode(escaped.encode("latin-1"))[0]
    except (ValueError, UnicodeEncodeError):
        return None


def _strings(args: str, payload: bool):
    for m in _STRING.finditer(args):
        before = args[max(0, m.start() - 11):m.start()]
        is_address = before.endswith(_ADDRESS_STRING_BEFORE)
        if is_address != payload:
            yield m.group(0)[1:-1]


def _blank_payloads(args: str) -> str:
    def blank(m: re.Match) -> str:
        before = args[max(0, m.start() - 11):m.start()]
        return m.group(0) if before.endswith(_ADDRESS_STRING_BEFORE) else '""'

    return _STRING.sub(blank, args)


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _is_local(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    # connect() to 0.0.0.0 or :: reaches this machine.
    return address.is_loopback or address.is_unspecified


def _dns_name(escaped: str) -> str | None:
    """The name a DNS query asks for, from strace's escaped copy of the packet."""
    packet = _unescape(escaped)
    if packet is None:
        return None
    labels, at = [], 12  # the question follows the 12-byte header
    while at < len(packet):
        size = packet[at]
        if size == 0:
            return ".".join(labels) or None
        if size > 63:
            return None
        labels.append(packet[at + 1:at + 1 + size].decode("ascii", "replace"))
        at += 1 + size
    return ".".join(labels) or None  # cut short by -s: the labels read so far


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.netguard.native", description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", default="enclave-network.strace", help="where the trace is written")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    options = parser.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("give the command to run after --")
    result = run(command, Path(options.log))
    found = attempts(options.log)
    for attempt in found:
        print(attempt)
    print(f"{len(found)} attempt(s) to reach past this machine; the command exited {result.returncode}; "
          f"trace in {options.log}", file=sys.stderr)
    return 1 if found else result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
