"""The one worker shape, with a fake engine: stepping, priority, pause, cancel, errors, shutdown."""

from __future__ import annotations

import threading
import time

import pytest
from PySide6.QtCore import QThread

from desktop.workers import GENERIC_FAILURE, EngineWorker
from rag.errors import EnclaveError


class FakeEngine:
    def __init__(self):
        self.thread = threading.get_ident()
        self.log: list[str] = []
        self.closed = False

    def close(self):
        self.closed = True


@pytest.fixture
def worker():
    engines = []

    def factory():
        engines.append(FakeEngine())
        return engines[-1]

    w = EngineWorker(factory)
    w.engines = engines
    w.start()
    yield w
    w.shutdown()
    assert not w.is_running()


def collect(worker):
    events = []
    for name in ("started", "progress", "result", "failed", "finished"):
        getattr(worker, name).connect(lambda *args, name=name: events.append((name, *args)))
    return events


def test_engine_is_built_and_used_on_the_worker_thread(qtbot, worker):
    events = collect(worker)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        job = worker.submit(lambda engine, job: engine.thread)
    engine_thread = next(e[2] for e in events if e[0] == "result")
    assert engine_thread != threading.get_ident()
    assert [e[0] for e in events] == ["started", "result", "finished"]
    assert all(e[1] == job.id for e in events)


def test_generator_steps_become_progress_then_result(qtbot, worker):
    events = collect(worker)

    def counting(engine, job):
        yield from range(4)

    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.submit(counting)
    assert [(e[0], e[2]) for e in events if e[0] in ("progress", "result")] == [
        ("progress", 0), ("progress", 1), ("progress", 2), ("result", 3)]


def test_an_answer_is_stepped_before_the_rest_of_an_indexing_run(qtbot, worker):
    order = []
    gate = threading.Event()

    def indexing(engine, job):
        for i in range(50):
            order.append(f"index{i}")
            if i == 2:
                gate.set()
            time.sleep(0.005)  # a file's worth of work
            yield i

    def answering(engine, job):
        for i in range(3):
            order.append(f"answer{i}")
            yield i

    indexing_job = worker.submit(indexing, background=True)
    qtbot.waitUntil(gate.is_set, timeout=5000)
    with qtbot.waitSignal(worker.finished, timeout=5000, check_params_cb=lambda job: job != indexing_job.id):
        worker.submit(answering)
    first_answer = order.index("answer0")
    assert order[first_answer:first_answer + 3] == ["answer0", "answer1", "answer2"]
    assert first_answer < 50, "the answer waited for the whole indexing run"
    worker.cancel(indexing_job)


def test_pause_resume_and_cancel(qtbot, worker):
    steps = []

    def indexing(engine, job):
        for i in range(10_000):
            if job.should_stop():
                yield "cancelled"
                return
            steps.append(i)
            yield i

    events = collect(worker)
    job = worker.submit(indexing, background=True)
    qtbot.waitUntil(lambda: len(steps) > 5, timeout=5000)
    worker.pause(job)
    qtbot.wait(50)
    paused_at = len(steps)
    qtbot.wait(100)
    assert len(steps) <= paused_at + 1
    worker.resume(job)
    qtbot.waitUntil(lambda: len(steps) > paused_at + 5, timeout=5000)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.cancel(job)
    assert ("result", job.id, "cancelled") in events


def test_errors_reach_the_user_as_messages(qtbot, worker, caplog):
    messages = []
    worker.failed.connect(lambda job, message: messages.append(message))

    def readable(engine, job):
        raise EnclaveError("The model file is damaged. Choose another one in Settings.")

    def bug(engine, job):
        raise ZeroDivisionError("oops")

    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.submit(readable)
    with qtbot.waitSignal(worker.finished, timeout=5000):
        worker.submit(bug)
    assert messages == ["The model file is damaged. Choose another one in Settings.", GENERIC_FAILURE]
    assert "ZeroDivisionError" in caplog.text  # logged with its traceback


def test_shutdown_closes_the_engine_and_open_generators(qtbot):
    closed = threading.Event()
    engines = []

    def endless(engine, job):
        try:
            while True:
                yield 1
        finally:
            closed.set()

    w = EngineWorker(lambda: engines.append(FakeEngine()) or engines[-1])
    w.start()
    w.submit(endless, background=True)
    qtbot.waitUntil(lambda: bool(engines), timeout=5000)
    qtbot.wait(20)
    w.shutdown()
    assert not w.is_running()
    assert closed.is_set() and engines[0].closed
    assert w.thread() is QThread.currentThread()


def test_a_broken_engine_is_reported(qtbot):
    def factory():
        raise EnclaveError("Another Enclave is using this data folder.")

    w = EngineWorker(factory)
    with qtbot.waitSignal(w.engine_failed, timeout=5000) as failed:
        w.start()
    assert failed.args == ["Another Enclave is using this data folder."]
    w.shutdown()


def busy_for_a_second(engine, job):  # module-level: jobs for the engine's process must pickle
    time.sleep(1.0)
    return "done"


def count_unless_stopped(engine, job):
    for i in range(30):
        if job.should_stop():
            yield "stopped"
            return
        time.sleep(0.1)
        yield i
    yield "ran to the end"


def test_a_job_cancelled_before_it_starts_starts_stopped_in_the_engine_process(qtbot, tmp_path):
    from desktop.workers import ProcessEngine

    folder = tmp_path / "data"
    folder.mkdir()
    w = EngineWorker(ProcessEngine(folder))
    w.start()
    try:
        events = collect(w)
        w.submit(busy_for_a_second)
        job = w.submit(count_unless_stopped)
        w.cancel(job)  # it waits behind the first: Stop pressed before an answer began
        with qtbot.waitSignal(w.finished, check_params_cb=lambda job_id: job_id == job.id, timeout=120_000):
            pass
        assert ("result", job.id, "stopped") in events
        assert not any(e[0] == "progress" and e[1] == job.id for e in events)
    finally:
        w.shutdown()
    assert not w.is_running()
