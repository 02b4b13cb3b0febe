"""#21: the drop hint was drawn over the chat text with no background, and its lines wrapped
over the buttons at 1024 px."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QFontMetrics
from PySide6.QtWidgets import QApplication

from desktop.dropping import TITLE


@pytest.mark.parametrize("size", [(1024, 700), (1440, 900)])
def test_the_drop_hint_is_a_card_over_a_veiled_window(qtbot, window, tmp_path, size):
    window.resize(*size)
    window.chat.set_messages([{"role": "user", "text": "How many ducks? " * 40, "answer": None}])
    qtbot.wait(50)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path))])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(window.rect().center(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    hint = window.drop_hint
    assert hint.isVisible()
    rects = hint.layout_rects()
    card = rects["card"]
    assert hint.rect().contains(card), "the card is cut by the window"
    for name in ("title", "subtitle", "formats"):
        assert card.contains(rects[name]), name
    # the title is one line: it does not wrap at this width
    title_font = hint._fonts()[0]
    assert rects["title"].height() <= QFontMetrics(title_font).height() * 1.2
    image = hint.grab().toImage()
    ratio = image.devicePixelRatio()

    def at(x, y):
        return QColor(image.pixel(int(x * ratio), int(y * ratio)))

    base = hint.palette().base().color()
    # the card is opaque: the chat's text does not show through between its lines
    inside = at(card.left() + 8, card.center().y())
    assert abs(inside.lightness() - base.lightness()) < 8, inside.name()
    # outside the card the window is veiled: near the window's colour wherever the chat is
    veiled = at(window.chat.mapTo(window.centralWidget(), window.chat.rect().topLeft()).x() + 40,
                card.top() - 20)
    assert abs(veiled.lightness() - hint.palette().window().color().lightness()) < 40
    hint.hide()
