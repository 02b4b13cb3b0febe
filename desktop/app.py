"""The composition root: builds the application, the engine worker and the main window.

The window shows at once; the engine (catalog, store, embedding model) is built in a process
of its own and the answering model in the model host, after the window shows.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = _application(sys.argv)
    window = create_main_window()
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
