"""The composition root: builds the application, the engine worker and the main window.

The window shows at once; the engine (catalog, store, embedding model) is built in a process
of its own and the answering model in the model host, after the window shows.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSocketNotifier, QTimer
from PySide6.QtWidgets import QApplication

from rag.config import resolve_data_dir

from .main_window import APP_NAME, MainWindow
from .messages import MessageBridge
from .theme import app_icon, apply_theme
from .workers import EngineWorker, ProcessEngine, ThreadEngine


def _application(argv: list[str]) -> QApplication:
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setDesktopFileName("enclave")
    app.setWindowIcon(app_icon())
    apply_theme(app)
    return app


def create_main_window(
    data_dir: str | os.PathLike | None = None,
    engine_factory: Callable[[Path], Any] | None = None,
    welcome: bool = True,
) -> MainWindow:
    """Returns the main window without entering the event loop (for tests and embedding).

    By default the engine runs in a process of its own (desktop/engine_host.py): the window's
    process imports Qt and nothing heavy. `engine_factory(data_dir)` instead builds an engine
    on the worker thread, in this process (tests pass one with a shared embedding model or a
    fake). `welcome=False` skips indexing the bundled guide on a new data folder.
    """
    _application(sys.argv[:1])
    folder = resolve_data_dir(data_dir)

    if engine_factory is None:
        backend = ProcessEngine(folder)
    else:
        def build():
            # Start-up checks first: Chroma can abort the process on some damaged files, so
            # the store is opened in a child process before the engine opens it here.
            from rag import health

            problems = health.problems(folder)
            if problems:
                raise health.DataFolderDamaged(problems)
            return engine_factory(folder)

        backend = ThreadEngine(build)

    worker = EngineWorker(backend)
    bridge = MessageBridge()
    window = MainWindow(folder, worker, bridge, welcome=welcome)
    bridge._parent_widget = window
    bridge.install()
    worker.start()
    return window


def close_on_signals(app: QApplication, window: MainWindow) -> None:
    """Ctrl-C in the terminal (SIGINT) or SIGTERM closes the window as Quit does: the engine's
    process is shut down and waited for, then the application ends.

    Python runs a signal handler only when the interpreter runs, and Qt's event loop waits in
    C++: the signal's byte on a wakeup socket wakes the loop, whose Python slot lets the
    handler run. Without this, Ctrl-C did nothing until some slot ran, and then raised
    KeyboardInterrupt inside it. A second signal ends the process at once (the default
    action); the engine's process dies with it (die_with_parent).
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    signal.set_wakeup_fd(writer.fileno())
    notifier = QSocketNotifier(reader.fileno(), QSocketNotifier.Read, app)

    def drain() -> None:
        try:
            reader.recv(64)
        except OSError:
            pass

    def on_signal(signum, _frame) -> None:
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        logging.getLogger(__name__).info("%s: closing", signal.Signals(signum).name)
        QTimer.singleShot(0, lambda: (window.close(), app.quit()))

    notifier.activated.connect(drain)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    app._signal_wakeup = (reader, writer, notifier)  # kept as long as the application


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = _application(sys.argv)
    window = create_main_window()
    close_on_signals(app, window)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
