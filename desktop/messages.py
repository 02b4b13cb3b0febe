"""One message bridge: every error the user should read goes through here.

`sys.excepthook` and `threading.excepthook` are routed to it, so an exception in a slot or a
thread is shown instead of vanishing. The previous hooks are still called (pytest-qt relies
on its own hook to fail a test on an exception in a slot).
"""

from __future__ import annotations

import logging
import sys
import threading

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QWidget


log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong inside Enclave: {}. The details are in the log."


class MessageBridge(QObject):
    error_reported = Signal(str)
    _posted = Signal(str)  # queued to the UI thread from any thread

    def __init__(self, parent_widget: QWidget | None = None):
        super().__init__()
        self._parent_widget = parent_widget
        self.messages: list[str] = []  # everything shown, for tests and the log
        self._boxes: list[QMessageBox] = []
        self._previous = None
        self._previous_thread = None
        self._posted.connect(self._on_posted)

    def report(self, message: str) -> None:
        """Show `message` to the user (any thread)."""
        self._posted.emit(message)

    @Slot(str)
    def _on_posted(self, message: str) -> None:
        self.messages.append(message)
        log.warning("shown to the user: %s", message)
        self.error_reported.emit(message)
        box = QMessageBox(QMessageBox.Warning, "Enclave", message, QMessageBox.Ok, self._parent_widget)
        box.setObjectName("errorMessage")
        box.setModal(False)
        box.finished.connect(lambda _=0, b=box: self._boxes.remove(b) if b in self._boxes else None)
        self._boxes.append(box)
        box.show()  # non-modal: never blocks the event loop (or a test)

    # --- hooks ---------------------------------------------------------------------------

    def install(self) -> None:
        self._previous = sys.excepthook
        self._previous_thread = threading.excepthook
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook

    def uninstall(self) -> None:
        if self._previous is not None and sys.excepthook == self._excepthook:
            sys.excepthook = self._previous
        if self._previous_thread is not None and threading.excepthook == self._thread_excepthook:
            threading.excepthook = self._previous_thread
        for box in list(self._boxes):
            box.close()
        self._boxes.clear()

    def _excepthook(self, kind, value, tb) -> None:
        log.error("unhandled exception", exc_info=(kind, value, tb))
        self.report(_describe(value))
        if self._previous is not None and self._previous is not sys.__excepthook__:
            self._previous(kind, value, tb)

    def _thread_excepthook(self, args) -> None:
        log.error("unhandled exception in thread %s", args.thread, exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        self.report(_describe(args.exc_value))
        if self._previous_thread is not None and self._previous_thread is not threading.__excepthook__:
            self._previous_thread(args)


def _describe(value: BaseException | None) -> str:
    from rag.errors import EnclaveError

    if isinstance(value, EnclaveError):
        return str(value)
    return UNEXPECTED.format(type(value).__name__ if value is not None else "an error")
