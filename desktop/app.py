"""The composition root: builds the application and the main window."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

APP_NAME = "Enclave"


class MainWindow(QMainWindow):
    def __init__(self, data_dir: str | None = None):
        super().__init__()
        self.data_dir = data_dir
        self.setWindowTitle(f"{APP_NAME} — private document assistant")
        self.resize(1100, 720)
        placeholder = QLabel("Drop documents here to index them. (The full window is coming.)")
        placeholder.setObjectName("placeholder")
        self.setCentralWidget(placeholder)


def create_main_window(data_dir: str | None = None) -> MainWindow:
    """Returns the main window without entering the event loop (for tests and embedding)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    return MainWindow(data_dir)


def main() -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName(APP_NAME)
    window = create_main_window()
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
