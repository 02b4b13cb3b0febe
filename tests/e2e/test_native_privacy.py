"""Nothing leaves the machine, as the kernel sees it: the whole flow under strace.

The Python guard (tests/conftest.py) patches `socket`, so it misses a connection or a DNS
lookup made inside a native library. Here the whole flow (tests/e2e/native_flow.py: index a
sample of every corpus folder, scans and images by OCR included, search, ask the bundled
model, then open the window, add a scan and ask there) runs under `strace -f`, and every
connect/sendto/sendmsg/sendmmsg of every thread of every process it starts is judged by
tests/netguard/native.py: none may go to an address off the machine, to a DNS port, or to a
name-service daemon.

The flow runs in the machine's own network namespace, not one without routes: a library
that checks for a route before it uploads would stay quiet there and talk on a person's
machine. Its environment is a bare one, as a person's shell would give: no CI variables
(onnxruntime, for one, switches its telemetry off when it sees them, so under CI the test
would otherwise watch a quieter program than people run) and a HOME of its own, where
nothing may leave a tracking identifier either.

`make privacy-check` runs this file alone; run it after adding or upgrading a dependency.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, ROOT, require
from tests.netguard import native

pytestmark = pytest.mark.slow

# Variables a person's session has; everything else (CI markers, the test run's own
# settings and guards) is left out.
PASSED_ON = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")


def flow_environment(home: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env.update(HOME=str(home), QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


def test_the_whole_flow_sends_nothing_off_the_machine_even_from_native_code(tmp_path):
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: `make privacy-tools` installs it (apt-get install strace). "
                    "This test is the only one that sees native code reach the network; it is never skipped.")
    corpus = require(CORPUS)
    work, home, trace = tmp_path / "flow", tmp_path / "home", tmp_path / "flow.strace"
    work.mkdir()
    home.mkdir()

    result = native.run([sys.executable, "-m", "tests.e2e.native_flow", str(work), str(corpus)], trace,
                        cwd=ROOT, env=flow_environment(home), capture_output=True, text=True, timeout=3000)

    attempts = native.attempts(trace)
    assert not attempts, f"{len(attempts)} attempt(s) to reach past this machine:\n" + "\n".join(
        dict.fromkeys(str(a) for a in attempts))
    assert result.returncode == 0, f"the flow failed ({result.returncode}): {result.stderr[-3000:]}"
    # strace followed the flow into every kind of process it starts: the CLI, the readers,
    # the model host, the window's engine process.
    started = native.programs(trace)
    assert any(Path(argv[0]).name == "enclave-cli" for argv in started), started
    modules = {argv[2] for argv in started if argv[1:2] == ["-m"]}
    assert {"rag.ingest.parsing", "rag.llm.host", "desktop.engine_host"} <= modules, modules

    # The flow did what it says, so a quiet trace means something.
    flow = json.loads((work / "flow.json").read_text())
    picked = flow["picked"]
    assert {p["folder"] for p in picked} == {p.name for p in corpus.iterdir() if p.is_dir()}
    assert {".pdf", ".png", ".jpg", ".tif"} <= {p["suffix"] for p in picked if p["folder"] == "scanned"}
    index = flow["index"]
    assert index["indexed"] >= 20, index
    failed_scans = [f for f in index["failed"] if "/scanned/" in f["path"]]
    assert not failed_scans, failed_scans
    assert any("MEDRPT" in hit["path"] for hit in flow["search"]), "the scan was not read by OCR"
    assert flow["ask"]["answer"] and flow["ask"]["sources"]
    window = flow["window"]
    assert window["errors"] == [] and window["index"]["indexed"] == 2 and not window["index"]["failed"]
    assert not window["answer"]["refused"] and window["answer"]["sources"][0]["path"].endswith("lighthouse.txt")

    # No library left an identifier to be sent later (onnxruntime keeps its device id and
    # its queue of unsent events under ~/.cache/Microsoft).
    assert not (home / ".cache" / "Microsoft").exists(), sorted(map(str, (home / ".cache" / "Microsoft").rglob("*")))


def test_the_native_guard_sees_a_lookup_made_by_native_code(tmp_path):
    """The guard itself: getent resolves a name through glibc, in C, where the Python guard
    cannot look."""
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: `make privacy-tools` installs it (apt-get install strace)")
    trace = tmp_path / "getent.strace"
    native.run(["getent", "hosts", "enclave-privacy-check.invalid"], trace, capture_output=True, timeout=60)
    seen = native.attempts(trace)
    assert any(a.why.startswith("DNS query") or "name-service" in a.why for a in seen), trace.read_text()
    assert all(a.command == "getent" for a in seen)


# Lines as strace 6 writes them; the two nscd requests follow glibc's layout (nscd_helper.c).
LINES = """\
4575<python> connect(8<UNIX-STREAM:[36511]>, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
4575<python> connect(8<UDP:[36517]>, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16 <unfinished ...>
4576<python> <... connect resumed>) = 0
4576<python> sendto(9<UDP:[192.0.2.2:60916->10.255.255.53:53]>, "L?\\1\\0\\0\\1\\0\\0\\0\\0\\0\\0\\6mobile\\6events\\4data\\tmicrosoft\\3com\\0\\0\\1\\0\\1", 50, MSG_NOSIGNAL, NULL, 0) = 50
4577<python> connect(5<TCP:[4242]>, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "2606:4700::1", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH (Network is unreachable)
4578<python> sendmsg(6<UDP:[4343]>, {msg_name={sa_family=AF_INET, sin_port=htons(123), sin_addr=inet_addr("192.0.2.7")}, msg_namelen=16, msg_iov=[{iov_base="x", iov_len=1}], msg_iovlen=1, msg_controllen=0, msg_flags=0}, 0) = 1
4579<python> connect(7<TCP:[4444]>, {sa_family=AF_INET, sin_port=htons(5432), sin_addr=inet_addr("127.0.0.1")}, 16) = 0
4579<python> sendto(7<TCP:[127.0.0.1:40000->127.0.0.1:5432]>, "sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr(\\"8.8.8.8\\")", 70, 0, NULL, 0) = 70
4580<python> connect(3<TCPv6:[4545]>, {sa_family=AF_INET6, sin6_port=htons(8000), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::ffff:127.0.0.1", &sin6_addr), sin6_scope_id=0}, 28) = 0
4580<python> sendto(3<TCPv6:[[::1]:41000->[::1]:8000]>, "GET /", 5, MSG_NOSIGNAL, NULL, 0) = 5
4581<python> connect(4<UNIX-STREAM:[4646]>, {sa_family=AF_UNIX, sun_path="/tmp/enclave-model.sock"}, 110) = 0
4583<python> connect(5<UNIX-STREAM:[5050]>, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = 0
4583<python> sendto(5<UNIX-STREAM:[5050->5051]>, "\\2\\0\\0\\0\\1\\0\\0\\0\\2\\0\\0\\0000\\0", 14, MSG_NOSIGNAL, NULL, 0) = 14
4584<python> connect(5<UNIX-STREAM:[5052]>, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = 0
4584<python> sendto(5<UNIX-STREAM:[5052->5053]>, "\\2\\0\\0\\0\\16\\0\\0\\0\\f\\0\\0\\0example.com\\0", 24, MSG_NOSIGNAL, NULL, 0) = 24
4585<python> connect(6<UNIX-STREAM:[5054]>, {sa_family=AF_UNIX, sun_path="/run/systemd/resolve/io.systemd.Resolve"}, 42) = 0
4582<python> sendto(9<NETLINK:[4747]>, [{nlmsg_len=20, nlmsg_type=RTM_GETADDR, nlmsg_flags=NLM_F_REQUEST|NLM_F_DUMP, nlmsg_seq=1, nlmsg_pid=0}, {ifa_family=AF_UNSPEC}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20
"""


def test_the_guard_reads_strace_lines_as_strace_writes_them(tmp_path):
    trace = tmp_path / "lines.strace"
    trace.write_text(LINES)
    seen = [(a.pid, a.call, a.target, a.why) for a in native.attempts(trace)]
    assert seen == [
        (4575, "connect", "10.255.255.53:53", "DNS query"),
        (4576, "sendto", "10.255.255.53:53", "DNS query for mobile.events.data.microsoft.com"),
        (4577, "connect", "[2606:4700::1]:443", "connection off the machine"),
        (4578, "sendmsg", "192.0.2.7:123", "connection off the machine"),
        (4584, "sendto", "/var/run/nscd/socket", "host name lookup through nscd (GETAI example.com)"),
        (4585, "connect", "/run/systemd/resolve/io.systemd.Resolve", "host name lookup through a resolver daemon"),
    ]  # loopback (v4, v6, v4-mapped), a Unix socket, netlink, an address inside a payload,
    # and a user lookup through nscd (4583: GETPWBYUID) pass
