"""Every question asked in the window is answered, in order, or ends with a message: asked
from an `answer_finished` handler, asked while another answer streams, asked ten times back
to back. An answer the model stops giving ends after the stall limit with a message, the
next question works, and nothing the abandoned answer sends later lands anywhere."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from desktop import jobs
from rag.config import Settings
from tests.desktop.test_answer_trust import SUPPORTED, ScriptedModel, index_zen, model_window
from tests.desktop.test_engine_process import process_window  # noqa: F401 - a fixture
from tests.e2e.test_model_process import LONG_QUESTION, QUESTION, children_named

ANSWER_DEADLINE_MS = 120_000  # one answer of the bundled model on a busy 2-core machine
ZEN_QUESTIONS = [
    "What is better than ugly?",
    "Is beautiful better than ugly?",
    "What is better than implicit?",
    "Is simple better than complex?",
    "What is better than complicated?",
    "Is flat better than nested?",
    "What is better than dense?",
    "Does readability count?",
    "Should errors ever pass silently?",
    "Is now better than never?",
]


class Answers:
    """What the window told the user, in order: ("answer", dict) or ("failed", message), a
    failure being what the message bridge showed (every answer that fails is shown there)."""

    def __init__(self, window):
        self.window = window
        self.seen: list[tuple[str, object]] = []
        self.at: list[float] = []  # seconds after the recorder began
        self._began = time.monotonic()
        window.answer_finished.connect(lambda answer: self._record("answer", answer))
        window.bridge.error_reported.connect(lambda message: self._record("failed", message))

    def _record(self, kind: str, value: object) -> None:
        self.seen.append((kind, value))
        self.at.append(time.monotonic() - self._began)

    def _missing(self, count: int, timeout: int) -> AssertionError:
        said = ", ".join(f"{kind} at {at:.0f} s" for (kind, _), at in zip(self.seen, self.at))
        return AssertionError(f"no answer {count} within {timeout // 1000} s of waiting for it; "
                              f"the window said: {said or 'nothing'}")

    def wait(self, qtbot, count: int, timeout: int = ANSWER_DEADLINE_MS):
        try:
            qtbot.waitUntil(lambda: len(self.seen) >= count, timeout=timeout)
        except qtbot.TimeoutError:
            raise self._missing(count, timeout) from None
        return self.seen[count - 1]

    def next_answer(self, qtbot, timeout: int = ANSWER_DEADLINE_MS):
        """Returns as the window's next answer_finished is emitted: before its job has ended."""
        count = len(self.seen) + 1
        try:
            with qtbot.waitSignal(self.window.answer_finished, timeout=timeout):
                pass
        except qtbot.TimeoutError:
            raise self._missing(count, timeout) from None
        return self.seen[-1]


def stored_messages(qtbot, window) -> list[dict]:
    got = []
    window.client.run(jobs.messages(window._conversation), on_result=got.append)
    qtbot.waitUntil(lambda: bool(got), timeout=30_000)
    return got[0]


def user_questions_in_chat(window) -> list[str]:
    """The questions the chat shows as asked (not waiting), in order, each followed by Enclave."""
    markdown = window.chat.markdown()
    blocks = markdown.split("\n\n---\n\n")
    asked = []
    for i, block in enumerate(blocks):
        if block.startswith("**You**\n\n"):
            assert i + 1 < len(blocks) and blocks[i + 1].startswith("**Enclave**"), block
            asked.append(block.split("\n\n", 1)[1])
    return asked


def test_a_question_asked_from_the_answer_finished_handler_is_answered(qtbot, window, tmp_path):
    index_zen(qtbot, window, tmp_path)
    said = Answers(window)
    first, second = ZEN_QUESTIONS[:2]

    def ask_the_next(answer):
        if len(said.seen) == 1:  # this handler runs after the recorder above
            window.ask(second)

    window.answer_finished.connect(ask_the_next)
    window.ask(first)
    for n in (1, 2):
        kind, answer = said.wait(qtbot, n)
        assert kind == "answer", answer
        assert not answer["refused"] and answer["quote"]["text"] == "Beautiful is better than ugly."
    assert user_questions_in_chat(window) == [first, second]
    qtbot.waitUntil(lambda: not window.is_answering(), timeout=10_000)
    stored = stored_messages(qtbot, window)
    assert [(m["role"], m["text"]) for m in stored if m["role"] == "user"] == [("user", first), ("user", second)]
    assert [m["role"] for m in stored] == ["user", "assistant"] * 2


def test_ten_questions_back_to_back_are_each_answered_in_order(qtbot, window, tmp_path):
    index_zen(qtbot, window, tmp_path)
    said = Answers(window)
    # Five at once, as a script would ask them: the last four wait, shown as waiting.
    for question in ZEN_QUESTIONS[:5]:
        window.ask(question)
    shown_waiting = window.chat.markdown().count("*waiting for the answer above*")
    # Each answer in turn, each with its own deadline. From the fifth on, the next question
    # is asked the moment an answer is shown: in the gap between the answer's result and the
    # end of its job, where questions used to vanish.
    for n in range(1, 11):
        kind, answer = said.next_answer(qtbot)
        assert kind == "answer", (n, answer)
        if 5 <= n < 10:
            window.ask(ZEN_QUESTIONS[n])
    assert [kind for kind, _ in said.seen] == ["answer"] * 10
    assert shown_waiting == 4
    qtbot.waitUntil(lambda: not window.is_answering(), timeout=10_000)
    assert window.chat.waiting() == []
    assert user_questions_in_chat(window) == ZEN_QUESTIONS
    stored = stored_messages(qtbot, window)
    assert [m["text"] for m in stored if m["role"] == "user"] == ZEN_QUESTIONS
    assert [m["role"] for m in stored] == ["user", "assistant"] * 10
    assert window.bridge.messages == []


class FrozenFirstModel(ScriptedModel):
    """Its first answer stalls (no token, deaf to Stop) until released, then says something;
    every later answer is the scripted one at once."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0

    def stream(self, messages, max_tokens, temperature=0.0, should_stop=None, refuse_at=None):
        self.calls += 1
        if self.calls == 1:
            self.release.wait(120)
            yield "LATE words of the abandoned answer [1]."
            return
        yield from super().stream(messages, max_tokens, temperature, should_stop, refuse_at)


def test_a_stalled_answer_ends_with_a_message_and_its_late_result_lands_nowhere(qtbot, data_dir, real_embedder,
                                                                              tmp_path):
    model = FrozenFirstModel()
    window = model_window(qtbot, data_dir, real_embedder, model)
    try:
        index_zen(qtbot, window, tmp_path)
        said, failures = Answers(window), []
        window.answer_failed.connect(failures.append)
        Settings(answer_stall_s=2.0).save(data_dir)
        window.ask(ZEN_QUESTIONS[0])
        kind, message = said.wait(qtbot, 1, timeout=60_000)
        assert (kind, message) == ("failed", "The model has not answered for 2 seconds; Enclave stopped waiting. "
                                             "Ask again.")
        assert f"*{message}*" in window.chat.markdown()
        assert window.chat.send_button.isEnabled() and not window.chat.stop_button.isEnabled()

        Settings(answer_stall_s=120.0).save(data_dir)
        window.ask(ZEN_QUESTIONS[1])  # waits in the engine behind the stalled job
        model.release.set()  # the abandoned answer now streams and ends
        kind, answer = said.wait(qtbot, 2)
        assert kind == "answer", answer
        assert SUPPORTED in answer["answer"] and "LATE" not in answer["answer"]
        qtbot.waitUntil(lambda: not window.is_answering(), timeout=10_000)
        assert len(said.seen) == 2  # no answer_finished for the abandoned question
        assert "LATE" not in window.chat.markdown()
        assert user_questions_in_chat(window) == ZEN_QUESTIONS[:2]
        assert window.bridge.messages == failures == [message]
    finally:
        model.release.set()
        window.close()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def freeze(qtbot, window, target: str) -> int:
    """Once the engine is idle, SIGSTOP `target` ("model": the model host, or "engine")."""
    qtbot.waitUntil(lambda: not window.client.jobs, timeout=60_000)
    engine = window.worker.backend.pid
    pid = engine if target == "engine" else children_named(engine, "rag.llm.host")[0]
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_a_frozen_model_host_ends_the_answer_and_the_next_question_works(qtbot, process_window, data_dir):
    from desktop.answers import stalled_message

    window = process_window
    said, failures = Answers(window), []
    window.answer_failed.connect(failures.append)
    window.ask(QUESTION)
    assert said.wait(qtbot, 1, timeout=300_000)[0] == "answer"

    Settings(top_k=3, answer_stall_s=5.0).save(data_dir)
    host = freeze(qtbot, window, "model")
    window.ask(QUESTION)
    kind, message = said.wait(qtbot, 2, timeout=60_000)
    assert (kind, message) == ("failed", stalled_message(5.0)) == ("failed", "The model has not answered for "
                                                                   "5 seconds; Enclave stopped waiting. Ask again.")
    assert window.chat.markdown().endswith(f"*{message}*")
    assert window.chat.send_button.isEnabled() and not window.chat.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not alive(host), timeout=30_000)  # the frozen host was ended

    Settings(top_k=3).save(data_dir)
    window.ask(QUESTION)
    kind, answer = said.wait(qtbot, 3, timeout=300_000)
    assert kind == "answer" and not answer["refused"] and answer["answer"].strip()
    assert len(said.seen) == 3
    # the abandoned answer's own end (its model host closed) reached neither the chat nor the user
    assert "stopped unexpectedly" not in window.chat.markdown()
    assert window.bridge.messages == failures == [message]
    # The history has the abandoned question with a failed turn under it, not a bare question.
    turns = [(m["role"], bool((m.get("answer") or {}).get("failed"))) for m in stored_messages(qtbot, window)]
    assert turns == [("user", False), ("assistant", False), ("user", False), ("assistant", True),
                     ("user", False), ("assistant", False)], turns


def test_a_frozen_engine_process_is_restarted_and_the_next_question_works(qtbot, process_window, data_dir,
                                                                         monkeypatch):
    from desktop import answers
    from desktop.answers import stalled_message

    window = process_window
    said = Answers(window)
    window.ask(QUESTION)
    assert said.wait(qtbot, 1, timeout=300_000)[0] == "answer"

    monkeypatch.setattr(answers, "INTERRUPT_GRACE_S", 2.0)
    Settings(top_k=3, answer_stall_s=3.0).save(data_dir)
    engine = freeze(qtbot, window, "engine")
    host = children_named(engine, "rag.llm.host")[0]
    window.ask(QUESTION)
    kind, message = said.wait(qtbot, 2, timeout=60_000)
    assert (kind, message) == ("failed", stalled_message(3.0))
    # the engine never came back, even with its model host ended: its process is replaced
    qtbot.waitUntil(lambda: window.worker.backend.pid not in (None, engine), timeout=60_000)
    qtbot.waitUntil(lambda: not alive(engine) and not alive(host), timeout=30_000)

    Settings(top_k=3).save(data_dir)
    window.ask(QUESTION)
    kind, answer = said.wait(qtbot, 3, timeout=300_000)
    assert kind == "answer" and not answer["refused"]
    assert "stopped unexpectedly" not in window.chat.markdown()
    # The question sent to the frozen engine never reached the history; every question that
    # did has its turn under it.
    assert [m["role"] for m in stored_messages(qtbot, window)] == ["user", "assistant"] * 2


def test_closing_the_window_while_the_model_host_is_frozen_ends_the_engine(qtbot, process_window, monkeypatch):
    from desktop import workers

    window = process_window
    monkeypatch.setattr(workers, "SHUTDOWN_GRACE_S", 2.0)
    engine = window.worker.backend.pid
    host = children_named(engine, "rag.llm.host")[0]
    pieces = []
    window.worker.progress.connect(lambda job, value: pieces.append(value))
    window.ask(LONG_QUESTION)
    # Frozen mid-answer, so the engine waits on the host's socket and never reads a stop.
    qtbot.waitUntil(lambda: any(isinstance(p, str) and p for p in pieces), timeout=300_000)
    os.kill(host, signal.SIGSTOP)
    # Without an end to the wait, closing blocks for ever; the rescue thaws the host after
    # 30 s (the grace is 2 s) so a failing run ends, and says it was needed.
    rescued = threading.Event()
    rescue = threading.Timer(30, lambda: (rescued.set(), os.kill(host, signal.SIGCONT)))
    rescue.daemon = True
    rescue.start()
    try:
        window.close()
    finally:
        rescue.cancel()
    assert not rescued.is_set(), "closing the window waited on the frozen model host"
    assert not window.worker.is_running()
    qtbot.waitUntil(lambda: not alive(engine) and not alive(host), timeout=30_000)
