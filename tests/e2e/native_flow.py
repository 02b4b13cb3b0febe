"""The whole flow as a person runs it, for tests/e2e/test_native_privacy.py to watch from
outside under strace: index a sample of every corpus folder with the CLI (scans and images
by OCR), search, ask the bundled model, then open the window on the same data folder, add a
scanned page and a note, and ask there.

    python -m tests.e2e.native_flow WORKDIR CORPUS    # writes WORKDIR/flow.json

Nothing here guards the network (tests.conftest, which installs the Python guard, is not
imported): the point is to see what the real code does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

# The scan the issue was found with: three pages of OCR keep a reader busy long enough for
# anything that starts with the OCR runtime to show itself.
PREFERRED = {"scanned": "MEDRPT-2024-PAT-3847_medical_report_scan.pdf"}
SCAN_CHECK = "SEATTLE GENERAL HOSPITAL"
WINDOW_SCAN = "scanned/phototest.tif"
NOTE = "The Skagen lighthouse is painted white and its keeper is named Ingrid Holm.\n"
WINDOW_QUESTION = "Who keeps the Skagen lighthouse?"


def pick_corpus(corpus: Path, into: Path) -> list[dict]:
    """One file of each kind (suffix) from each corpus folder, the smallest unless one is
    preferred, copied so that the OCR ground truth beside the scans (and the notes that
    quote them) is never indexed."""
    picked = []
    for folder in sorted(p for p in corpus.iterdir() if p.is_dir()):
        by_suffix: dict[str, list[Path]] = {}
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or path.name.startswith(("LICENSE", ".")) or path.name.endswith(".gt.txt"):
                continue
            if path.parent == folder and path.name == "README.md":  # notes on the corpus that quote the scans
                continue
            by_suffix.setdefault(path.suffix.lower(), []).append(path)
        for suffix, paths in sorted(by_suffix.items()):
            preferred = [p for p in paths if p.name == PREFERRED.get(folder.name)]
            source = (preferred or sorted(paths, key=lambda p: (p.stat().st_size, p.name)))[0]
            target = into / folder.name / source.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
            picked.append({"folder": folder.name, "suffix": suffix, "path": str(target)})
    return picked


def cli(data: Path, *args: str) -> dict | list:
    command = [str(Path(sys.executable).with_name("enclave-cli")), "--data-dir", str(data), "--json", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def run_window(data: Path, docs: Path, scan: Path) -> dict:
    from PySide6.QtCore import QEventLoop, QTimer

    from desktop.app import create_main_window

    docs.mkdir(parents=True)
    (docs / "lighthouse.txt").write_text(NOTE)
    shutil.copy(scan, docs / scan.name)

    window = create_main_window(data, welcome=False)
    window.show()
    errors: list[str] = []
    window.bridge.error_reported.connect(errors.append)

    def wait_for(signal, start, seconds: float) -> tuple:
        loop, got = QEventLoop(), []

        def on_emitted(*args):
            got.append(args)
            loop.quit()

        signal.connect(on_emitted)
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        start()
        loop.exec()
        signal.disconnect(on_emitted)
        if not got:
            raise SystemExit(f"the window did not finish in {seconds:g} s; it reported {errors}")
        return got[0]

    try:
        (indexed,) = wait_for(window.indexing_finished, lambda: window.add_paths([str(docs)]), 900)
        (answer,) = wait_for(window.answer_finished, lambda: window.ask(WINDOW_QUESTION), 900)
    finally:
        window.close()
    return {"index": indexed, "answer": answer, "errors": errors}


def main(work: Path, corpus: Path) -> None:
    from rag.config import Settings

    docs, data = work / "docs", work / "data"
    picked = pick_corpus(corpus, docs)
    data.mkdir(mode=0o700)
    # Three sources, not five: a shorter prompt, so answers come sooner on a small CPU.
    Settings(top_k=3).save(data)
    flow = {"picked": picked}
    flow["index"] = cli(data, "index", str(docs))
    flow["search"] = cli(data, "search", SCAN_CHECK, "-k", "3")
    flow["ask"] = cli(data, "ask", "What was the patient's blood pressure?")
    flow["window"] = run_window(data, work / "window-docs", corpus / WINDOW_SCAN)
    (work / "flow.json").write_text(json.dumps(flow, indent=1, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
