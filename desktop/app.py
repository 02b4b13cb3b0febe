"""The composition root: builds the application, the engine worker and the main window.

The window shows at once; the engine (catalog, store), the answering model and the welcome
guide are built and loaded on the worker thread after it shows.
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
from .workers import EngineWorker


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

    `engine_factory(data_dir)` builds the engine on the worker thread (tests pass one that
    shares a loaded embedding model); by default `rag.engine.Engine(data_dir)`. `welcome=False`
    skips indexing the bundled guide on a new data folder (tests that do not need it).
    """
    _application(sys.argv[:1])
    folder = resolve_data_dir(data_dir)

    def build():
        # Start-up checks first: Chroma can abort the process on some damaged files, so the
        # store is opened in a child process before the engine opens it here.
        from rag import health

        problems = health.problems(folder)
        if problems:
            raise health.DataFolderDamaged(problems)
        if engine_factory is not None:
            return engine_factory(folder)
        from rag.engine import Engine  # imported on the worker thread: the window shows first

        return Engine(folder)

    worker = EngineWorker(build)
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
