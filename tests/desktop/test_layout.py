"""The window's layout holds at the sizes people use: the states the README's screenshots show
(empty, a library with documents, an answer with its sources, a source opened, the settings
dialog), each at 1024x700 and 1440x900, fail on a label whose text does not fit, on visible
sibling widgets drawn over each other, and on any Qt warning printed on the way."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import Qt, QtMsgType, qInstallMessageHandler
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QAbstractButton, QApplication, QLabel, QPushButton, QWidget

SIZES = ((1024, 700), (1440, 900))
# The offscreen platform plugin cannot pass a window's minimum size to a window manager it
# does not have and says so on every resize; on a desktop this message never appears.
PLATFORM_NOISE = ("This plugin does not support propagateSizeHints()",)


@pytest.fixture
def qt_warnings():
    """Every Qt warning (or worse) printed while the test runs; the test fails on any."""
    caught: list[str] = []

    def handler(kind, context, message):
        if kind in (QtMsgType.QtWarningMsg, QtMsgType.QtCriticalMsg, QtMsgType.QtFatalMsg) \
                and message not in PLATFORM_NOISE:
            caught.append(message)

    previous = qInstallMessageHandler(handler)
    yield caught
    qInstallMessageHandler(previous)


def _shown(widget: QWidget, top: QWidget) -> bool:
    return widget.isVisibleTo(top) and widget.width() > 0 and widget.height() > 0


def clipped(top: QWidget) -> list[str]:
    """Labels and buttons whose text needs more room than they have. A label that elides its
    text (ends in "…") or wraps it within its height is fine."""
    found = []
    for label in top.findChildren(QLabel):
        if not _shown(label, top) or not label.text() or label.pixmap() is not None and not label.pixmap().isNull():
            continue
        room = label.contentsRect()
        if label.wordWrap():
            need_h = label.heightForWidth(label.width())
            if need_h > label.height() + 1:
                found.append(f"label {label.objectName() or label.text()[:40]!r}: wraps to {need_h} px, has {label.height()}")
            continue
        if label.text().endswith("…"):
            continue
        hint = label.sizeHint()
        if hint.width() > room.width() + label.margin() * 2 + 2 or hint.height() > label.height() + 2:
            found.append(f"label {label.objectName() or label.text()[:40]!r}: needs {hint.width()}x{hint.height()}, "
                         f"has {label.width()}x{label.height()}")
    for button in top.findChildren(QAbstractButton):
        if not _shown(button, top) or not button.text() or button.inherits("QToolButton") and not button.text().strip():
            continue
        text_w = button.fontMetrics().horizontalAdvance(button.text().replace("&", ""))
        if text_w > button.width() - 4:
            found.append(f"button {button.text()!r}: text needs {text_w} px, button is {button.width()}")
    return found


def overlapping(top: QWidget) -> list[str]:
    """Visible sibling widgets whose rectangles intersect (a splitter's or scroll area's own
    parts are laid out by Qt and never overlap; anything that does is drawn over)."""
    found = []
    for parent in [top, *top.findChildren(QWidget)]:
        if not _shown(parent, top) and parent is not top:
            continue
        kids = [w for w in parent.children() if isinstance(w, QWidget) and not w.isWindow() and _shown(w, top)]
        for i, a in enumerate(kids):
            for b in kids[i + 1:]:
                overlap = a.geometry().intersected(b.geometry())
                if overlap.width() > 1 and overlap.height() > 1:
                    found.append(f"{_name(a)} overlaps {_name(b)} in {parent.metaObject().className()} "
                                 f"({overlap.width()}x{overlap.height()} px)")
    return found


def _name(widget: QWidget) -> str:
    text = widget.text()[:30] if hasattr(widget, "text") and callable(widget.text) else ""
    return f"{widget.metaObject().className()}({widget.objectName() or text!r})"


def settle(qtbot, top: QWidget) -> None:
    """Let the layouts catch up before measuring. A label whose text a queued signal changes
    (the engine's counts, the model's name) inside the last processEvents() has its relayout
    posted for the next turn, and would be measured at its old size: lay out what is pending."""
    qtbot.wait(60)
    for _ in range(3):
        QApplication.processEvents()
        for widget in [top, *top.findChildren(QWidget)]:
            if widget.layout() is not None:
                widget.layout().activate()


def check(qtbot, top: QWidget, state: str, warnings: list[str]) -> list[str]:
    problems = []
    for width, height in SIZES:
        top.resize(width, height)
        settle(qtbot, top)
        if top.size().toTuple() != (width, height):  # a minimum size larger than the screen
            problems.append(f"{state}: the window cannot be {width}x{height}, it stays {top.width()}x{top.height()}"
                            + "".join(f"; {_name(w)} needs {w.minimumSizeHint().width()} px"
                                      for w in getattr(top, "splitter", None) and
                                      [top.splitter.widget(i) for i in range(top.splitter.count())] or []
                                      if w.isVisible()))
        problems += [f"{state} at {width}x{height}: {p}" for p in clipped(top) + overlapping(top)]
        if os.environ.get("ENCLAVE_LAYOUT_SHOTS"):  # to look at what was checked
            top.grab().save(os.path.join(os.environ["ENCLAVE_LAYOUT_SHOTS"], f"{state}-{width}.png".replace(" ", "-")))
    problems += [f"{state}: Qt warning: {w}" for w in warnings]
    warnings.clear()
    return problems


def test_the_checks_catch_what_they_look_for(qtbot):
    """A label too narrow for its text, two buttons placed over each other: both reported."""
    top = QWidget()
    qtbot.addWidget(top)
    label = QLabel("A sentence far too long for forty pixels", top)
    label.setGeometry(0, 0, 40, 20)
    a, b = QPushButton("One", top), QPushButton("Two", top)
    a.setGeometry(0, 30, 80, 30)
    b.setGeometry(40, 40, 80, 30)
    top.resize(200, 100)
    top.show()
    qtbot.waitExposed(top)
    assert any("far too long" in p for p in clipped(top))
    assert any("overlaps" in p for p in overlapping(top))


def test_card_snippets_end_at_a_word():
    from PySide6.QtGui import QFontMetrics

    from desktop.cards import card_text, cut_lines

    metrics = QFontMetrics(QApplication.font())
    text = "The ferry to Laeso leaves from Frederikshavn at dawn and returns at dusk " * 4
    lines = cut_lines(text, metrics, 200)
    assert len(lines) == 2 and lines[-1].endswith(" …")
    words = set(text.split())
    assert all(w in words for line in lines for w in line.rstrip(" …").split()), lines  # no word cut
    assert all(metrics.horizontalAdvance(line) <= 200 for line in lines)
    card = card_text({"n": 1, "path": "/a/b/report.pdf", "page": 3, "score": 0.033, "relevance": "partial",
                      "text": "x"})
    assert "page 3" in card and "partial match" in card and "0.033" not in card


def test_every_state_fits_at_both_sizes(qtbot, window, tmp_path, qt_warnings):
    # A new window: the empty state says what to do, and no source pane takes room yet.
    assert window.chat.empty.isVisibleTo(window) and not window.viewer.isVisibleTo(window)
    problems = check(qtbot, window, "empty window", qt_warnings)

    folder = tmp_path / "docs"
    folder.mkdir()
    notes = folder / "quarterly-operations-review-for-the-northern-region-2024-final.txt"
    notes.write_text("The ferry to Laeso leaves from Frederikshavn at dawn. It carries 600 passengers.\n")
    (folder / "minutes.md").write_text("# Minutes\n\nThe board approved the new harbour budget of 4.2 million.\n")
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000):
        window.add_paths([str(folder)])
    qtbot.waitUntil(lambda: window.library.model.rowCount() == 2, timeout=10_000)
    problems += check(qtbot, window, "library with documents", qt_warnings)

    text = notes.read_text()
    source = {"n": 1, "path": str(notes), "page": None, "char_start": 0, "score": 0.8, "relevance": "strong",
              "text": text, "support": {"start": 0, "end": 52, "text": text[:52]}}
    other = dict(source, n=2, path=str(folder / "minutes.md"), relevance="weak",
                 text="The board approved the new harbour budget of 4.2 million.", support=None)
    quote = {"text": "The ferry to Laeso leaves from Frederikshavn at dawn.", "source": source}
    answer = {"sources": [source, other], "quote": quote, "quotes": [quote],
              "claims": [{"text": "The ferry leaves at dawn [1].", "start": 0, "end": 29, "supported": True,
                          "support": {"n": 1, "start": 0, "end": 52, "text": text[:52]}}]}
    window.chat.set_messages([  # a refusal, then an answer whose sources show as cards
        {"role": "user", "text": "What is the CEO's salary?", "answer": None},
        {"role": "assistant", "text": "The sources cannot answer this question.",
         "answer": {"sources": [], "refused": True}},
        {"role": "user", "text": "When does the ferry leave?", "answer": None},
        {"role": "assistant", "text": "The ferry leaves at dawn [1].", "answer": answer},
    ])
    assert not window.chat.empty.isVisibleTo(window) and window.chat.cards.count() == 2
    problems += check(qtbot, window, "answer with sources", qt_warnings)

    window.show_source(dict(source))
    qtbot.waitUntil(lambda: window.viewer.source is not None, timeout=30_000)
    assert window.viewer.isVisibleTo(window), "opening a source did not unfold its pane"
    problems += check(qtbot, window, "source opened", qt_warnings)

    from desktop.settings_dialog import SettingsDialog
    from rag.config import Settings

    dialog = SettingsDialog(Settings.load(window.data_dir), str(window.data_dir), window)
    dialog.show()
    qtbot.waitExposed(dialog)
    for width, height in SIZES:  # the dialog at its own size, over each window size
        window.resize(width, height)
        settle(qtbot, dialog)
        problems += [f"settings dialog over {width}x{height}: {p}" for p in clipped(dialog) + overlapping(dialog)]
    dialog.close()
    problems += [f"settings dialog: Qt warning: {w}" for w in qt_warnings]

    assert not problems, "\n".join(problems)


def test_emoji_are_drawn_in_colour_and_text_keeps_its_own_font(qapp):
    """Flags come from the colour emoji font by the system's fallback (`make run` and `make
    test` install Noto Color Emoji where it is missing), and spaces and digits do not: with
    the emoji font in the font's family list, "What is 42 ?" drew 1.4 times as wide."""
    from PySide6.QtGui import QFontMetrics, QImage, QPainter

    from desktop.theme import _ensure_font, emoji_font

    if emoji_font() is None:
        pytest.skip("no colour emoji font on this machine (make run installs fonts-noto-color-emoji)")
    _ensure_font(qapp)
    font = qapp.font()
    text = "What is 42 ?"
    assert QFontMetrics(font).horizontalAdvance(text) == QFontMetrics(QFont(font.family(), font.pointSize())) \
        .horizontalAdvance(text)
    image = QImage(120, 60, QImage.Format_ARGB32)
    image.fill(Qt.white)
    painter = QPainter(image)
    painter.setFont(font)
    painter.drawText(5, 40, "\U0001F1E9\U0001F1EA")  # the German flag: two regional indicators
    painter.end()
    colours = [image.pixelColor(x, y) for x in range(120) for y in range(60)]
    coloured = [c for c in colours if max(c.red(), c.green(), c.blue()) - min(c.red(), c.green(), c.blue()) > 60]
    assert len(coloured) > 20, "the flag was drawn without colour (a box or letters)"
