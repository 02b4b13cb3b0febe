"""Regenerates the README's screenshots from the real window (offscreen or Xvfb).

    QT_QPA_PLATFORM=offscreen python benchmarks/screenshots.py [--out assets/screenshots]

empty.png      first run: the welcome guide indexed, nothing asked yet
answer.png     an answer, its sources, and the cited PDF page with the passage highlighted
indexing.png   the progress bar while a folder of PDFs is indexed
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS_PDF = ROOT.parent / "shared" / "corpus" / "pdf"
MULTICOLUMN = CORPUS_PDF / "026-latex-multicolumn" / "multicolumn.pdf"
SIZE = (1440, 880)


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

    from desktop.app import create_main_window

    with tempfile.TemporaryDirectory(prefix="enclave-screens-") as data_dir:
        work = Path(data_dir) / "documents"
        work.mkdir()
        window = create_main_window(Path(data_dir) / "data")
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        window.resize(*SIZE)
        window.show()
        loaded = []
        window.model_loaded.connect(loaded.append)
        wait_for(app, lambda: bool(loaded), 120)
        wait_for(app, lambda: not window.client.pending("welcome"), 300)
        wait_for(app, lambda: window.library.model.rowCount() > 0, 30)
        settle(app)
        window.grab().save(str(out / "empty.png"))

        reports, answers = [], []
        window.indexing_finished.connect(reports.append)
        window.answer_finished.connect(answers.append)
        window.add_paths([str(MULTICOLUMN)])
        wait_for(app, lambda: bool(reports), 300)
        window.chat.input.setPlainText("What is the capital of Denmark?")
        window.chat._on_send_clicked()
        wait_for(app, lambda: bool(answers), 300)
        source = next((s for s in answers[0]["sources"] if s.get("page") == 3), answers[0]["sources"][0])
        message = len(window.chat._messages) - 1
        window.chat.view.anchorClicked.emit(__import__("PySide6.QtCore").QtCore.QUrl(f"cite:{message}/{source['n']}"))
        settle(app, 1.0)
        window.grab().save(str(out / "answer.png"))

        folder = work / "pdf"
        import shutil

        shutil.copytree(CORPUS_PDF, folder)
        window.add_paths([str(folder)])
        wait_for(app, lambda: window.progress.bar.value() >= 4, 300)
        settle(app, 0.2)
        window.grab().save(str(out / "indexing.png"))
        window._for_index_jobs(window.worker.cancel)
        wait_for(app, lambda: len(reports) >= 2, 300)
        window.close()
    for name in ("empty.png", "answer.png", "indexing.png"):
        print(out / name)


if __name__ == "__main__":
    main()
