"""The window's questions: answered one at a time, in the order asked, each one watched.

A question asked while another is answered waits (the chat shows it as waiting) and starts
when the current answer ends. The current answer ends at the first of its result, its
failure or the watchdog, never at the job's `finished`: that signal comes after the result,
and a question asked in between (from an `answer_finished` handler, a script, a quick Enter)
must find the window free, not busy with an answer already shown.

The watchdog: an answer that brings no quote, no piece and no result for the stall limit
(settings' `answer_stall_s`) ends with a message, and the next question starts. Its job is
told to stop and, if it was running, the model host it waits on is ended (a frozen host
never reads a stop); if the engine still has not come back after a grace period, the
engine's process is restarted. Every callback is bound to its own question and only the
current question reaches the chat, so nothing the abandoned job sends later lands in a
later answer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from PySide6.QtCore import QObject, QTimer, Signal

from . import jobs
from .client import EngineClient
from .workers import Job

log = logging.getLogger(__name__)

INTERRUPT_GRACE_S = 20.0  # after ending the model host, how long the engine has to come back
ENDED_WITHOUT_RESULT = "The answer ended without a result. The details are in the log; ask again."


def stalled_message(limit_s: float) -> str:
    return f"The model has not answered for {_duration(limit_s)}; Enclave stopped waiting. Ask again."


def _duration(seconds: float) -> str:
    whole = max(1, round(seconds))
    if whole % 60 == 0:
        minutes = whole // 60
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{whole} second{'s' if whole != 1 else ''}"


@dataclass(eq=False)
class _Question:
    text: str
    collection: str
    job: Job | None = None


class AnswerQueue(QObject):
    """Owns the current answer, the questions waiting behind it and the watchdog."""

    waiting = Signal(str)        # a question waits behind the current answer
    started = Signal(str)        # a question's answer begins
    progressed = Signal(object)  # the quote or a piece of the current answer
    answered = Signal(dict)      # the current answer's result: {"answer", "conversation", "stopped"}
    failed = Signal(str)         # the current answer ended without a result; the message says why

    def __init__(self, client: EngineClient, conversation: Callable[[], int | None],
                 stall_limit_s: Callable[[], float], parent=None):
        """`conversation()`: where the next answer goes, read when it starts (the answer
        before it may have just created the conversation); `stall_limit_s()` likewise."""
        super().__init__(parent)
        self.client = client
        self.worker = client.worker
        self._conversation = conversation
        self._stall_limit_s = stall_limit_s
        self._current: _Question | None = None
        self._waiting: deque[_Question] = deque()
        self._limit_s = 0.0
        self._watchdog = QTimer(self)
        self._watchdog.setSingleShot(True)
        self._watchdog.timeout.connect(self._on_stalled)
        self._stuck: Job | None = None  # an abandoned job the engine has not come back from
        self._grace = QTimer(self)
        self._grace.setSingleShot(True)
        self._grace.timeout.connect(self._on_grace_over)

    # --- from the window ------------------------------------------------------------------

    def ask(self, question: str, collection: str) -> None:
        self._waiting.append(_Question(question, collection))
        if self._current is not None:
            self.waiting.emit(question)
        self._start_next()

    def stop(self) -> None:
        """Stop the current answer; the questions waiting behind it are still answered."""
        if self._current is not None and self._current.job is not None:
            self.worker.cancel(self._current.job)

    def busy(self) -> bool:
        return self._current is not None or bool(self._waiting)

    def close(self) -> None:
        self._watchdog.stop()
        self._grace.stop()
        self._waiting.clear()
        current, self._current = self._current, None
        if current is not None and current.job is not None:
            self.worker.cancel(current.job)

    # --- the current answer ---------------------------------------------------------------

    def _start_next(self) -> None:
        if self._current is not None or not self._waiting:
            return
        question = self._current = self._waiting.popleft()
        self.started.emit(question.text)
        question.job = self.client.run(
            jobs.ask(question.text, question.collection, self._conversation()), name="ask",
            on_progress=partial(self._on_progress, question), on_result=partial(self._on_result, question),
            on_failed=partial(self._on_failed, question), on_finished=partial(self._on_finished, question))
        self._limit_s = self._stall_limit_s()
        self._watchdog.start(round(self._limit_s * 1000))

    def _on_progress(self, question: _Question, value: object) -> None:
        if question is not self._current:
            return  # an abandoned answer's late piece
        self._watchdog.start()
        self.progressed.emit(value)

    def _on_result(self, question: _Question, result: dict) -> None:
        if question is not self._current:
            return
        self._end()
        self.answered.emit(result)
        self._start_next()

    def _on_failed(self, question: _Question, message: str) -> None:
        if question is not self._current:
            return
        self._end()
        self.failed.emit(message)
        self._start_next()

    def _on_finished(self, question: _Question) -> None:
        if question.job is self._stuck:
            self._stuck = None
            self._grace.stop()
        if question is self._current:  # neither a result nor a failure came
            log.error("answer job %s finished without a result", question.job.id if question.job else "?")
            self._on_failed(question, ENDED_WITHOUT_RESULT)

    def _end(self) -> None:
        self._current = None
        self._watchdog.stop()

    # --- the watchdog ---------------------------------------------------------------------

    def _on_stalled(self) -> None:
        question = self._current
        if question is None:
            return
        job = question.job
        log.warning("answer job %s brought nothing for %.0f s; abandoned", job.id, self._limit_s)
        self._end()
        if job.started:
            # Running, so it waits on the model: end the model host, whose closed socket
            # returns the engine's read as after a crash.
            self.worker.interrupt(job)
            self._stuck = job
            self._grace.start(round(INTERRUPT_GRACE_S * 1000))
        else:
            self.worker.cancel(job)  # still queued: it will stop as soon as it starts
        self.failed.emit(stalled_message(self._limit_s))
        self._start_next()

    def _on_grace_over(self) -> None:
        job, self._stuck = self._stuck, None
        if job is not None and not job.finished:
            log.error("the engine did not come back from answer job %s; restarting it", job.id)
            self.worker.restart_stuck(job)
