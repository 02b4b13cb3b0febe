"""Word, PowerPoint and OpenDocument text and presentations; chart data as text.

DOCX through python-docx (one unit: the document), PPTX through python-pptx (one unit per
slide: its shapes in reading order, table cells, chart series and the speaker notes), ODT
and ODP from their XML (the zip's content.xml, read with entities and network off).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from ...errors import FileUnreadable
from ...types import LoadedDocument, PageText
from .common import LoadContext, clean, decrypt_office, detail, is_ole, raise_if_out_of_memory

# --- DOCX ----------------------------------------------------------------------------


def load_docx(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    import docx

    if is_ole(data):  # an OLE container: a password-protected .docx, or an old .doc
        data = decrypt_office(path, data, context.passwords, "Word", ".docx")
    try:
        document = docx.Document(io.BytesIO(data))
        body = document.element.body
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(
            f"not a valid Word document (the file may be damaged or mislabeled): {detail(exc)}"
        ) from exc

    problems: list[str] = []
    lines = list(_docx_lines(body))
    # Headers and footers repeat on every page; keep each distinct one once, at the end.
    seen: set[str] = set()
    try:
        for section in document.sections:
            for part in (
                section.header, section.first_page_header, section.even_page_header,
                section.footer, section.first_page_footer, section.even_page_footer,
            ):  # fmt: skip
                if part.is_linked_to_previous:
                    continue
                text = "\n".join(_docx_lines(part._element))
                if text.strip() and text not in seen:
                    seen.add(text)
                    lines.append(text)
    except Exception as exc:
        problems.append(f"headers and footers could not be read ({detail(exc)})")
    text = clean("\n".join(lines))
    return LoadedDocument(path=str(path), kind="docx", pages=[PageText(None, text)], warnings=problems)


def _docx_lines(container) -> list[str]:
    """Paragraphs and tables of a body, header, footer or table cell, in document order."""
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    p_tag, tbl_tag, sdt_tag = qn("w:p"), qn("w:tbl"), qn("w:sdt")
    lines: list[str] = []
    for child in container.iterchildren():
        if child.tag == p_tag:
            text = Paragraph(child, None).text
            if text.strip():
                lines.append(text)
        elif child.tag == tbl_tag:
            lines.extend(_docx_table_rows(child))
        elif child.tag == sdt_tag:  # content control: its content sits one level down
            for content in child.iterchildren(qn("w:sdtContent")):
                lines.extend(_docx_lines(content))
    return lines


def _docx_table_rows(tbl) -> list[str]:
    # Cells are read straight from the XML: python-docx's grid arithmetic fails on rows
    # with missing or offset cells, which real files contain.
    rows = []
    for tr in tbl.xpath("./w:tr | ./w:sdt/w:sdtContent/w:tr"):
        cells = [
            "" if _continues_merge(tc) else " ".join(_docx_lines(tc)).strip()
            for tc in tr.xpath("./w:tc | ./w:sdt/w:sdtContent/w:tc")
        ]
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


def _continues_merge(tc) -> bool:
    # A vertically merged cell shows the text of the cell where the merge starts; Word
    # ignores whatever the continuation cells still hold.
    return bool(tc.xpath("./w:tcPr/w:vMerge[not(@w:val) or @w:val='continue']"))


# --- charts (PPTX and XLSX share DrawingML charts) -------------------------------------

C = "{http://schemas.openxmlformats.org/drawingml/2006/chart}"
A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"


def safe_xml(data: bytes):
    """Parse XML from a document: no entities expanded, nothing fetched."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_comments=True)
    return etree.fromstring(data, parser)


def chart_text(xml: bytes) -> str:
    """A chart's title and each series' name with its values by category, as lines of text:
    decks and workbooks often keep their numbers only in a chart."""
    root = safe_xml(xml)
    lines = []
    own = root.find(f"{C}chart/{C}title")  # the chart's title, not its axes
    title = " ".join(t.text or "" for t in own.iter(f"{A}t")).strip() if own is not None else ""
    lines.append(f"Chart: {title}" if title else "Chart")
    for series in root.iter(f"{C}ser"):
        name = " ".join(v.text or "" for v in series.findall(f"{C}tx//{C}v")).strip() or "series"
        categories = _points(series.find(f"{C}cat"))
        values = _points(series.find(f"{C}val")) or _points(series.find(f"{C}yVal"))
        pairs = [f"{categories.get(i, i + 1)}: {value}" for i, value in sorted(values.items())]
        lines.append(f"{name} — " + ", ".join(pairs))
    return "\n".join(lines)


def _points(element) -> dict[int, str]:
    if element is None:
        return {}
    out = {}
    for point in element.iter(f"{C}pt"):
        value = point.find(f"{C}v")
        if value is not None and value.text is not None:
            out[int(point.get("idx", len(out)))] = _number(value.text)
    return out


def _number(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else f"{value:g}"


# --- PPTX ----------------------------------------------------------------------------


def load_pptx(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    from pptx import Presentation

    if is_ole(data):  # a password-protected .pptx, or an old .ppt renamed
        data = decrypt_office(path, data, context.passwords, "PowerPoint", ".pptx")
    try:
        deck = Presentation(io.BytesIO(data))
        slides = list(deck.slides)
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(
            f"not a valid PowerPoint presentation (the file may be damaged or mislabeled): {detail(exc)}"
        ) from exc
    pages = []
    for number, slide in enumerate(slides, 1):
        lines = []
        for shape in _in_reading_order(slide.shapes):
            lines.extend(_shape_lines(shape, context))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                lines.append("Notes: " + notes.text.strip())
        pages.append(PageText(number=None, text=clean("\n".join(lines)), label=f"slide {number}"))
    return LoadedDocument(path=str(path), kind="pptx", pages=pages)


def _in_reading_order(shapes):
    """Top to bottom, then left to right; shapes without a position (inherited from the
    layout) keep their place after the positioned ones."""
    shapes = list(shapes)
    placed = [s for s in shapes if s.top is not None and s.left is not None]
    loose = [s for s in shapes if s.top is None or s.left is None]
    # Shapes whose tops are within a line of each other are side by side.
    return sorted(placed, key=lambda s: (round(s.top / 200000), s.left)) + loose


def _shape_lines(shape, context: LoadContext) -> list[str]:
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    lines = []
    try:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            for child in _in_reading_order(shape.shapes):
                lines.extend(_shape_lines(child, context))
        elif getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                if any(cells):
                    lines.append(" | ".join(cells))
        elif getattr(shape, "has_chart", False) and shape.has_chart:
            lines.append(chart_text(shape.chart_part.blob))
        elif shape.has_text_frame and shape.text_frame.text.strip():
            lines.append(shape.text_frame.text.strip())
    except Exception as exc:  # one odd shape costs that shape, not the slide
        context.warnings.append(f"a shape ({shape.name}) could not be read ({detail(exc)})")
    return lines


# --- OpenDocument --------------------------------------------------------------------

ODF_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
ODF_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
ODF_DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
ODF_PRESENTATION = "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
ODF_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"


def odf_content(data: bytes, what: str):
    """The parsed content.xml of an OpenDocument file."""
    if is_ole(data) or not data.startswith(b"PK"):
        raise FileUnreadable(f"not a valid {what} (the file may be damaged, mislabeled or password-protected)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = archive.read("META-INF/manifest.xml") if "META-INF/manifest.xml" in archive.namelist() else b""
            if b"encryption-data" in manifest:
                raise FileUnreadable(f"this {what} is password-protected: save it without a password and add it again")
            return safe_xml(archive.read("content.xml"))
    except FileUnreadable:
        raise
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(f"not a valid {what} (the file may be damaged or mislabeled): {detail(exc)}") from exc


def odf_text(element) -> str:
    """Text of an ODF element: spaces, tabs and line breaks as the application shows them."""
    parts = []

    def walk(node):
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag == f"{{{ODF_TEXT}}}s":
            parts.append(" " * int(node.get(f"{{{ODF_TEXT}}}c", "1")))
        elif tag == f"{{{ODF_TEXT}}}tab":
            parts.append("\t")
        elif tag == f"{{{ODF_TEXT}}}line-break":
            parts.append("\n")
        elif tag in (f"{{{ODF_TEXT}}}note", f"{{{ODF_OFFICE}}}annotation"):
            pass  # footnotes and comments are not part of the running text
        elif node.text:
            parts.append(node.text)
        if tag not in (f"{{{ODF_TEXT}}}note", f"{{{ODF_OFFICE}}}annotation"):
            for child in node:
                walk(child)
        if node.tail and node is not element:
            parts.append(node.tail)

    walk(element)
    return "".join(parts)


def _odf_blocks(container) -> list[str]:
    """Paragraphs, headings, lists and tables in document order."""
    lines = []
    for node in container:
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in (f"{{{ODF_TEXT}}}p", f"{{{ODF_TEXT}}}h"):
            text = odf_text(node).strip()
            if text:
                lines.append(text)
        elif tag == f"{{{ODF_TABLE}}}table":
            for row in node.iter(f"{{{ODF_TABLE}}}table-row"):
                cells = [" ".join(odf_text(cell).split()) for cell in row
                         if cell.tag in (f"{{{ODF_TABLE}}}table-cell", f"{{{ODF_TABLE}}}covered-table-cell")]
                if any(cells):
                    lines.append(" | ".join(c for c in cells))
        elif tag.startswith(f"{{{ODF_DRAW}}}") and tag.endswith("frame"):
            lines.extend(_odf_blocks(node))
        else:
            lines.extend(_odf_blocks(node))
    return lines


def load_odt(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    root = odf_content(data, "OpenDocument text")
    body = root.find(f"{{{ODF_OFFICE}}}body")
    text = clean("\n".join(_odf_blocks(body if body is not None else root)))
    return LoadedDocument(path=str(path), kind="odt", pages=[PageText(None, text)])


def load_odp(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    root = odf_content(data, "OpenDocument presentation")
    pages = []
    for number, slide in enumerate(root.iter(f"{{{ODF_DRAW}}}page"), 1):
        notes = slide.find(f"{{{ODF_PRESENTATION}}}notes")
        if notes is not None:
            slide.remove(notes)
        lines = _odf_blocks(slide)
        if notes is not None:
            note_text = "\n".join(_odf_blocks(notes)).strip()
            if note_text:
                lines.append("Notes: " + note_text)
        pages.append(PageText(number=None, text=clean("\n".join(lines)), label=f"slide {number}"))
    return LoadedDocument(path=str(path), kind="odp", pages=pages)
