"""#21: Ctrl-C in the terminal did not quit `make run`: the window and the engine kept running,
and once the engine printed a KeyboardInterrupt traceback and stayed a zombie."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> dict[int, str]:
    """{pid: command line} of every process below `pid`, read from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                try:
                    found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    found[child] = ""
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_closes_the_window_and_ends_the_engine(tmp_path, data_dir, signum):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", ENCLAVE_DATA_DIR=str(data_dir))
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as err:
        # A session of its own: the signal goes to the whole process group, as Ctrl-C in a
        # terminal does (the engine, the model host and the readers get it too).
        app = subprocess.Popen([sys.executable, "-c", "import sys; from desktop.app import main; sys.exit(main())"],
                               cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                               start_new_session=True)
    try:
        seen: dict[int, str] = {}
        deadline = time.monotonic() + 240
        # Up: the engine's process runs and has started the model host (the window loads the
        # model at launch), while the welcome guide is indexed.
        while not any("rag.llm.host" in c for c in seen.values()):
            assert app.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, f"the app did not start its engine: {stderr.read_text()}"
            seen.update(descendants(app.pid))
            time.sleep(0.5)
        assert any("desktop.engine_host" in c for c in seen.values())
        time.sleep(1)
        seen.update(descendants(app.pid))

        os.killpg(app.pid, signum)
        try:
            code = app.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the app still runs 90 s after {signum.name}: {stderr.read_text()[-3000:]}")
        assert code == 0, stderr.read_text()[-3000:]
        left = [pid for pid in seen if alive(pid)]
        for _ in range(20):  # a grandchild whose parent just ended may take a moment to go
            if not left:
                break
            time.sleep(0.25)
            left = [pid for pid in left if alive(pid)]
        assert not left, f"still running after the app ended: {[seen[p] for p in left]}"
        text = stderr.read_text()
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
