"""Light and dark follow the system's colour scheme, and text stays readable in both."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QAbstractItemView, QTextBrowser

AA = 4.5  # WCAG AA contrast for body text


def luminance(color: QColor) -> float:
    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio: 1 (none) to 21 (black on white)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.fixture
def system_scheme(qtbot, window):
    """Switches the desktop's colour scheme as Qt reports it (colorSchemeChanged), then waits
    for the window to take the application's new palette."""
    hints = QGuiApplication.styleHints()

    def switch(scheme):
        hints.colorSchemeChanged.emit(scheme)
        wanted = QGuiApplication.palette().color(QPalette.Window)
        qtbot.waitUntil(lambda: window.palette().color(QPalette.Window) == wanted, timeout=2000)

    yield switch
    hints.colorSchemeChanged.emit(hints.colorScheme())  # back to what this machine says


def link_colors(browser: QTextBrowser) -> list[QColor]:
    colors = []
    block = browser.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isAnchor():
                colors.append(fmt.foreground().color())
            it += 1
        block = block.next()
    return colors


def readable(window, scheme: str) -> None:
    palette = window.palette()
    for text, ground in ((QPalette.WindowText, QPalette.Window), (QPalette.Text, QPalette.Base),
                         (QPalette.ButtonText, QPalette.Button), (QPalette.HighlightedText, QPalette.Highlight)):
        ratio = contrast(palette.color(text), palette.color(ground))
        assert ratio >= AA, f"{scheme}: {text.name} on {ground.name} has contrast {ratio:.1f}"

    chat = window.findChild(QTextBrowser, "chatView")
    links = link_colors(chat)
    assert links, "the answer's citations are not links"
    for color in links:
        ratio = contrast(color, chat.palette().color(QPalette.Base))
        assert ratio >= AA, f"{scheme}: citation links {color.name()} have contrast {ratio:.1f}"

    table = window.findChild(QAbstractItemView, "documentList")
    model = table.model()
    for row in range(model.rowCount()):
        color = model.index(row, 1).data(Qt.ForegroundRole)
        if color is None:
            continue
        for ground in (QPalette.Base, QPalette.AlternateBase):  # rows alternate
            ratio = contrast(QColor(color), table.palette().color(ground))
            assert ratio >= AA, (f"{scheme}: state {model.index(row, 1).data()!r} in {QColor(color).name()} "
                                 f"on {ground.name} has contrast {ratio:.1f}")


def test_window_follows_the_system_scheme_and_stays_readable(qtbot, window, system_scheme, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "notes.txt").write_text("The ferry to Laeso leaves from Frederikshavn at dawn.\n")
    (folder / "broken.pdf").write_bytes(b"not a PDF, only bytes\n" * 20)
    (folder / "drawing.xyz").write_bytes(b"\x00\x01")
    with qtbot.waitSignal(window.indexing_finished, timeout=120_000):
        window.add_paths([str(folder)])
    model = window.library.model
    expected = {"broken.pdf": "Failed", "drawing.xyz": "Skipped", "notes.txt": "Indexed"}

    def states():
        return {model.index(r, 0).data(): model.index(r, 1).data() for r in range(model.rowCount())}

    # The library re-reads the catalog after indexing_finished (its own job); rows may still
    # say "Indexing…" when the signal arrives, so wait for the states, not only the rows.
    qtbot.waitUntil(lambda: states() == expected, timeout=10_000)
    # a stored answer with a citation, as opening a past conversation shows it
    source = {"n": 1, "path": str(folder / "notes.txt"), "page": None, "char_start": 0, "score": 0.8,
              "text": "The ferry to Laeso leaves from Frederikshavn at dawn.", "support": None}
    window.chat.set_messages([{"role": "user", "text": "When does the ferry leave?", "answer": None},
                              {"role": "assistant", "text": "At dawn [1].", "answer": {"sources": [source]}}])

    system_scheme(Qt.ColorScheme.Light)
    light = window.palette().color(QPalette.Window)
    assert light.lightness() > 160, f"light scheme, window background {light.name()}"
    readable(window, "light")

    system_scheme(Qt.ColorScheme.Dark)
    dark = window.palette().color(QPalette.Window)
    assert dark.lightness() < 90, f"dark scheme, window background {dark.name()}"
    chat_base = window.findChild(QTextBrowser, "chatView").palette().color(QPalette.Base)
    assert chat_base.lightness() < 90, "the chat view did not turn dark with the window"
    readable(window, "dark")

    system_scheme(Qt.ColorScheme.Light)  # and back, without a restart
    assert window.palette().color(QPalette.Window) == light
    readable(window, "light again")
