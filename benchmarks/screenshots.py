"""Regenerates every screenshot in the README from the real window: the real engine process,
the bundled models, a fresh data folder, the offscreen platform (or Xvfb).

    QT_QPA_PLATFORM=offscreen python benchmarks/screenshots.py [--out assets/screenshots]

empty.png          first run at 1440x900: the welcome guide indexed, the empty state
welcome.png        the empty state's example question answered from the Welcome guide
answer.png         a question about a PDF: the quote, the answer, source cards, the cited
                   page opened with the passage highlighted
dark.png           the same in the dark scheme (as a desktop switched to dark delivers it)
narrow.png         the same at 1024x700, light
indexing.png       the progress bar while a folder of PDFs is indexed

Nothing here is timed; each step waits for the window's own signals.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS_PDF = ROOT.parent / "shared" / "corpus" / "pdf"
MULTICOLUMN = CORPUS_PDF / "026-latex-multicolumn" / "multicolumn.pdf"
WIDE, NARROW = (1440, 900), (1024, 700)


def wait_for(app, predicate, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not predicate():
        if time.perf_counter() > deadline:
            return False
        app.processEvents()
        time.sleep(0.005)
    return True


def settle(app, seconds: float = 0.3) -> None:
    end = time.perf_counter() + seconds
    wait_for(app, lambda: time.perf_counter() > end, seconds + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "assets" / "screenshots"))
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    from desktop.app import create_main_window

    def shot(name: str, size=WIDE) -> None:
        window.resize(*size)
        settle(app, 0.5)
        if window.size().toTuple() != size:  # a minimum size too large: say so, not a wrong picture
            print(f"{name}: the window stays {window.width()}x{window.height()}, not {size[0]}x{size[1]}", flush=True)
        bar = window.chat.view.verticalScrollBar()
        bar.setValue(bar.maximum())  # the latest answer, as a reader who scrolled there sees it
        settle(app, 0.1)
        window.grab().save(str(out / name))
        print(out / name, flush=True)

    def scheme(value) -> None:
        QGuiApplication.styleHints().colorSchemeChanged.emit(value)  # what a desktop's switch sends
        settle(app, 0.5)

    with tempfile.TemporaryDirectory(prefix="enclave-screens-") as data_dir:
        work = Path(data_dir) / "documents"
        work.mkdir()
        window = create_main_window(Path(data_dir) / "data")
        app = QApplication.instance()
        scheme(Qt.ColorScheme.Light)  # whatever this machine says, the README's shots start light
        window.resize(*WIDE)
        window.show()
        loaded, reports, answers = [], [], []
        window.model_loaded.connect(loaded.append)
        window.indexing_finished.connect(reports.append)
        window.answer_finished.connect(answers.append)
        wait_for(app, lambda: bool(loaded), 180)
        wait_for(app, lambda: not window.client.pending("welcome"), 300)
        wait_for(app, lambda: window.library.model.rowCount() > 0, 30)
        shot("empty.png")

        # the empty state's example, answered from the Welcome guide
        window.chat.empty.findChild(type(window.chat.send_button), "tryQuestion").click()
        wait_for(app, lambda: bool(answers), 300)
        shot("welcome.png")

        # a PDF: the answer, its cards, and the cited page opened
        window.add_paths([str(MULTICOLUMN)])
        wait_for(app, lambda: bool(reports), 300)
        window.chat.input.setPlainText("What is the capital of Denmark?")
        window.chat._on_send_clicked()
        wait_for(app, lambda: len(answers) >= 2, 300)
        sources = answers[-1]["sources"]

        def open_cited_page() -> None:
            if not sources:
                return
            source = next((s for s in sources if s.get("page") == 3), sources[0])
            row = next(i for i in range(window.chat.cards.count())
                       if window.chat.cards.item(i).data(Qt.UserRole)["n"] == source["n"])
            window.viewer.source = None
            window.chat.cards.itemClicked.emit(window.chat.cards.item(row))  # as a click on its card
            wait_for(app, lambda: window.viewer.source is not None, 60)

        open_cited_page()
        shot("answer.png")
        shot("narrow.png", NARROW)
        scheme(Qt.ColorScheme.Dark)
        window.resize(*WIDE)
        open_cited_page()  # the PDF view lays its pages out again on a palette change
        shot("dark.png")
        scheme(Qt.ColorScheme.Light)

        folder = work / "pdf"
        shutil.copytree(CORPUS_PDF, folder)
        window.add_paths([str(folder)])
        wait_for(app, lambda: window.progress.bar.value() >= 4, 300)
        shot("indexing.png")
        window._for_index_jobs(window.worker.cancel)
        wait_for(app, lambda: len(reports) >= 2, 300)
        window.close()


if __name__ == "__main__":
    main()
