"""#21, the viewer: on a PDF the cited row was greyed inside a cyan box (QPdfView's search
highlight) and read as disabled; a passage whose words lie on different lines of the page (a
scanned report's form, a table's column) got no mark at all."""

from __future__ import annotations

from PySide6.QtGui import QColor

from desktop.source_viewer import SourceViewerWidget
from tests.desktop.conftest import MULTICOLUMN
from tests.conftest import require

ROW = "Denmark 5.8 42,951 Copenhagen Danish"


def show(qtbot, passage: str) -> SourceViewerWidget:
    pdf = require(MULTICOLUMN)
    viewer = SourceViewerWidget()
    qtbot.addWidget(viewer)
    viewer.resize(700, 800)
    viewer.show()
    qtbot.waitExposed(viewer)
    source = {"n": 1, "path": str(pdf), "page": 3, "text": passage, "support": {"start": 0, "end": len(passage),
                                                                                "text": passage}}
    viewer.requested = source
    viewer.show_pdf(source)
    return viewer


def pixels(image, rect) -> list[QColor]:
    return [QColor(image.pixel(x, y)) for x in range(int(rect.left()) + 3, int(rect.right()) - 2)
            for y in range(int(rect.top()) + 2, int(rect.bottom()) - 1)]


def test_the_cited_row_is_marked_in_amber_and_its_text_stays_black(qtbot):
    viewer = show(qtbot, ROW)
    assert viewer.highlighted_text == ROW
    view = viewer.pdf_view
    assert view.searchModel() is None  # QPdfView's own grey-blue and cyan highlight is not drawn
    qtbot.waitUntil(lambda: bool(view.mark_rects()), timeout=10_000)
    qtbot.wait(500)  # the page is rendered in the background
    image = view.viewport().grab().toImage()
    ratio = image.devicePixelRatio()
    rect = view.mark_rects()[0]
    rect = rect.__class__(rect.left() * ratio, rect.top() * ratio, rect.width() * ratio, rect.height() * ratio)
    inside = pixels(image, rect)
    assert inside
    amber = [c for c in inside if c.red() > 200 and c.green() > 150 and c.blue() < c.red() - 60]
    ink = [c for c in inside if c.lightness() < 110]
    cyan = [c for c in inside if c.red() < 120 and c.green() > 180 and c.blue() > 180]
    grey_blue = [c for c in inside if abs(c.red() - 176) < 20 and abs(c.green() - 196) < 20 and c.blue() > 200]
    assert len(amber) > len(inside) / 3, "the paper under the mark is not amber"
    assert ink, "the cited text is not dark under the mark"
    assert not cyan and not grey_blue
    # the mark is on the row: the page above it is white
    above = QColor(image.pixel(int(rect.center().x()), int(rect.top() - 30 * ratio)))
    assert above.blue() > 200


def test_a_passage_whose_words_lie_on_different_lines_is_still_marked(qtbot):
    viewer = show(qtbot, "Czech Republic Official Language Population (millions)")
    assert "Czech Republic" in viewer.highlighted_text and "Official Language" in viewer.highlighted_text
    assert len(viewer.pdf_view.marks) >= 2
