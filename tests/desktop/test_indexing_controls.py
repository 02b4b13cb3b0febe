"""Pause, resume and cancel an indexing run from the progress bar under the window."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QProgressBar

FILES = 150  # one chunk each: a run long enough to act on mid-way, short to embed
SYLLABLES = ("ka", "lo", "mi", "ru", "te", "sa", "no", "vi", "de", "po", "gu", "fe", "bi")


def keeper(i: int) -> str:
    """A made-up name that only note i holds."""
    return (SYLLABLES[i // len(SYLLABLES)] + SYLLABLES[i % len(SYLLABLES)] + "vik").capitalize()


def harbour_notes(tmp_path):
    folder = tmp_path / "harbours"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"harbour-{i:03d}.txt").write_text(
            f"Harbour log {i}. The harbour master of pier {i} is {keeper(i)}, who keeps the tide tables.\n")
    return folder


def act_at(bar: QProgressBar, files_done: int, action) -> list[int]:
    """Calls `action` once, as soon as the bar shows `files_done` files; returns where it was."""
    seen: list[int] = []

    def on_value(value: int) -> None:
        if value >= files_done and not seen:
            seen.append(value)
            action()

    bar.valueChanged.connect(on_value)
    return seen


def test_pause_holds_indexing_and_resume_finishes_it(qtbot, window, tmp_path):
    folder = harbour_notes(tmp_path)
    widget = window.progress
    bar = window.findChild(QProgressBar, "indexProgress")
    finished = []
    window.indexing_finished.connect(finished.append)
    shown = []

    def pause():
        qtbot.mouseClick(widget.pause_button, Qt.LeftButton)
        shown.append((widget.pause_button.text(), widget.label.text()))  # what the click shows at once

    paused_at = act_at(bar, 2, pause)
    window.add_paths([str(folder)])
    qtbot.waitUntil(lambda: bool(paused_at), timeout=120_000)
    button, label = shown[0]
    assert button == "Resume"
    assert label.startswith("paused"), f"the label does not say so: {label!r}"
    qtbot.wait(300)  # progress sent before the pause took effect arrives
    held = bar.value()
    assert held < FILES, "the run ended before it could be paused"
    qtbot.wait(1500)
    assert bar.value() == held, "indexing went on while paused"
    assert not finished and widget.isVisible()

    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as done:
        qtbot.mouseClick(widget.pause_button, Qt.LeftButton)
    report = done.args[0]
    assert report["indexed"] == FILES and not report["cancelled"], report
    qtbot.waitUntil(lambda: not widget.isVisible(), timeout=10_000)
    assert widget.pause_button.text() == "Pause"


def test_cancel_keeps_what_was_indexed_and_leaves_the_rest_unindexed(qtbot, window, tmp_path):
    folder = harbour_notes(tmp_path)
    widget = window.progress
    bar = window.findChild(QProgressBar, "indexProgress")
    cancelled_at = act_at(bar, 2, lambda: qtbot.mouseClick(widget.cancel_button, Qt.LeftButton))

    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as done:
        window.add_paths([str(folder)])
    report = done.args[0]
    assert cancelled_at and report["cancelled"], report
    kept = report["indexed"]
    assert 2 <= kept < FILES, report
    qtbot.waitUntil(lambda: not widget.isVisible(), timeout=10_000)

    # the library lists exactly the files indexed before the cancel, each usable
    model = window.library.model
    qtbot.waitUntil(lambda: model.rowCount() == kept, timeout=10_000)
    assert {model.index(r, 1).data() for r in range(kept)} == {"Indexed"}
    indexed = model.paths()
    assert all(path.startswith(str(folder)) for path in indexed)
    target = indexed[-1]
    name = keeper(int(Path(target).stem.split("-")[1]))
    hits = []
    window.client.run(lambda engine, job: engine.search(f"Who is {name}?", "default", 3), on_result=hits.append)
    qtbot.waitUntil(lambda: bool(hits), timeout=30_000)
    assert hits[0] and hits[0][0].path == target and name in hits[0][0].text

    # the rest were never marked indexed: added again, one of them is indexed, a kept one is unchanged
    rest = next(str(p) for p in sorted(folder.iterdir()) if str(p) not in indexed)
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000) as again:
        window.add_paths([target, rest])
    assert (again.args[0]["indexed"], again.args[0]["unchanged"]) == (1, 1), again.args[0]
    qtbot.waitUntil(lambda: model.rowCount() == kept + 1, timeout=10_000)
