"""Spreadsheets and delimited text: XLSX/XLSM (openpyxl), XLS (xlrd), ODS (its XML), CSV/TSV.

One unit per sheet, one line per row, cells joined by " | ". The row that names the columns
is found (titles above it are kept as text), and the chunker repeats it at the top of every
chunk of the rows below, so a chunk about row 214 still says which column is which.
Citations name the sheet and the rows. Formulas count by their cached values, as the
spreadsheet last showed them; charts are read as their series and values.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import posixpath
import zipfile
from collections.abc import Iterable
from pathlib import Path

from ...errors import FileUnreadable, PasswordRequired
from ...types import LoadedDocument, PageText
from .common import LoadContext, decode_text, decrypt_office, detail, is_ole, raise_if_out_of_memory
from .office import ODF_OFFICE, ODF_TABLE, chart_text, odf_content, odf_text, safe_xml

HEADER_SEARCH = 10  # the header row is among a sheet's first rows with content


def sheet_unit(name: str | None, rows: Iterable[tuple[int, list[str]]], extra: list[str] = ()) -> PageText | None:
    """A sheet's unit from (row number, cells) pairs; None when it holds nothing."""
    lines, numbers = [], []
    for number, cells in rows:
        while cells and not cells[-1]:
            cells.pop()
        if any(cells):
            lines.append(" | ".join(cells))
            numbers.append(number)
    for text in extra:  # charts: after the rows, numbered past the last row
        lines.extend(text.split("\n"))
        numbers.extend([(numbers[-1] if numbers else 0) + 1] * len(text.split("\n")))
    if not lines:
        return None
    label = f"sheet '{name}'" if name is not None else None
    return PageText(number=None, text="\n".join(lines), label=label, rows=tuple(numbers),
                    header=_header_line(lines))


def _header_line(lines: list[str]) -> int | None:
    """The first of the leading rows about as wide as most rows are: the rows above it are
    titles. None for a one-column sheet, whose rows need no column names."""
    widths = [sum(1 for cell in line.split(" | ") if cell.strip()) for line in lines[: HEADER_SEARCH * 3]]
    usual = max(set(widths), key=lambda w: (widths.count(w), w)) if widths else 0
    if usual < 2:
        return None
    for index, width in enumerate(widths[:HEADER_SEARCH]):
        if width >= 0.6 * usual and width >= 2:
            return index
    return None


def cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.15g}"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return " ".join(str(value).split())


def _document(path: Path, kind: str, pages: list[PageText]) -> LoadedDocument:
    return LoadedDocument(path=str(path), kind=kind, pages=pages)


# --- XLSX / XLSM ---------------------------------------------------------------------


def load_xlsx(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    import openpyxl

    if is_ole(data):  # a password-protected workbook is an OLE container around the package
        data = decrypt_office(path, data, context.passwords, "Excel", ".xlsx")
    try:
        # read_only streams rows; data_only gives the values cached when the file was saved.
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(f"not a valid Excel workbook (the file may be damaged or mislabeled): {detail(exc)}") from exc
    try:
        charts = _xlsx_charts(data)
    except Exception as exc:
        charts = {}
        context.warnings.append(f"charts could not be read ({detail(exc)})")
    pages = []
    try:
        for name in book.sheetnames:
            sheet = book[name]
            rows = []
            if hasattr(sheet, "iter_rows"):
                for number, row in enumerate(sheet.iter_rows(values_only=True), 1):
                    rows.append((number, [cell_text(v) for v in row]))
            unit = sheet_unit(name, rows, charts.get(name, []))
            if unit is not None:
                pages.append(unit)
    finally:
        book.close()
    return _document(path, "xlsx", pages)


_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_SHEET = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}sheet"
_RID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


def _xlsx_charts(data: bytes) -> dict[str, list[str]]:
    """Chart text by sheet name: sheet -> its drawing -> the drawing's charts."""
    out: dict[str, list[str]] = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        if not any(n.startswith("xl/charts/") for n in names):
            return out

        def rels(part: str) -> dict[str, tuple[str, str]]:
            folder, file = posixpath.split(part)
            rel_path = posixpath.join(folder, "_rels", file + ".rels")
            if rel_path not in names:
                return {}
            found = {}
            for rel in safe_xml(archive.read(rel_path)).iter(_REL):
                target = rel.get("Target", "")
                target = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
                found[rel.get("Id")] = (rel.get("Type", "").rsplit("/", 1)[-1], target)
            return found

        book_rels = rels("xl/workbook.xml")
        for sheet in safe_xml(archive.read("xl/workbook.xml")).iter(_SHEET):
            _, sheet_part = book_rels.get(sheet.get(_RID), ("", ""))
            for kind, drawing in rels(sheet_part).values():
                if kind != "drawing":
                    continue
                for chart_kind, chart in rels(drawing).values():
                    if chart_kind == "chart" and chart in names:
                        out.setdefault(sheet.get("name"), []).append(chart_text(archive.read(chart)))
    return out


# --- XLS -----------------------------------------------------------------------------


def load_xls(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except xlrd.biffh.XLRDError as exc:
        if "encrypt" in str(exc).lower():
            raise PasswordRequired(str(path), tried=len(context.passwords)) from exc
        raise FileUnreadable(f"not a valid Excel 97-2003 workbook (the file may be damaged or mislabeled): {detail(exc)}") from exc
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(f"not a valid Excel 97-2003 workbook (the file may be damaged or mislabeled): {detail(exc)}") from exc
    pages = []
    try:
        for index in range(book.nsheets):
            sheet = book.sheet_by_index(index)
            rows = []
            for r in range(sheet.nrows):
                cells = []
                for c, cell in enumerate(sheet.row(r)):
                    value = cell.value
                    if cell.ctype == xlrd.XL_CELL_DATE:
                        try:
                            value = xlrd.xldate.xldate_as_datetime(value, book.datemode)
                        except Exception:
                            pass
                    elif cell.ctype == xlrd.XL_CELL_ERROR:
                        value = xlrd.error_text_from_code.get(value, "#ERROR")
                    elif cell.ctype == xlrd.XL_CELL_BOOLEAN:
                        value = bool(value)
                    cells.append(cell_text(value))
                rows.append((r + 1, cells))
            unit = sheet_unit(sheet.name, rows)
            if unit is not None:
                pages.append(unit)
            book.unload_sheet(index)
    finally:
        book.release_resources()
    return _document(path, "xls", pages)


# --- ODS -----------------------------------------------------------------------------

_REPEAT_LIMIT = 1000  # repeated empty cells are how ODS pads a sheet; real data repeats rarely


def load_ods(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    root = odf_content(data, "OpenDocument spreadsheet")
    pages = []
    for table in root.iter(f"{{{ODF_TABLE}}}table"):
        rows, number = [], 0
        for row in table.iter(f"{{{ODF_TABLE}}}table-row"):
            repeat = int(row.get(f"{{{ODF_TABLE}}}number-rows-repeated", "1"))
            cells = []
            for cell in row:
                if cell.tag not in (f"{{{ODF_TABLE}}}table-cell", f"{{{ODF_TABLE}}}covered-table-cell"):
                    continue
                times = min(int(cell.get(f"{{{ODF_TABLE}}}number-columns-repeated", "1")), _REPEAT_LIMIT)
                cells.extend([_ods_value(cell)] * times)
            if any(cells):
                for _ in range(min(repeat, _REPEAT_LIMIT)):
                    number += 1
                    rows.append((number, list(cells)))
            else:
                number += repeat
        unit = sheet_unit(table.get(f"{{{ODF_TABLE}}}name"), rows)
        if unit is not None:
            pages.append(unit)
    return _document(path, "ods", pages)


def _ods_value(cell) -> str:
    kind = cell.get(f"{{{ODF_OFFICE}}}value-type")
    if kind in ("float", "percentage", "currency"):
        text = " ".join(odf_text(cell).split())
        value = cell.get(f"{{{ODF_OFFICE}}}value")
        return text or cell_text(float(value)) if value is not None else text
    if kind == "date":
        return cell.get(f"{{{ODF_OFFICE}}}date-value", "").replace("T00:00:00", "") or odf_text(cell)
    if kind == "boolean":
        return "TRUE" if cell.get(f"{{{ODF_OFFICE}}}boolean-value") == "true" else "FALSE"
    return " ".join(odf_text(cell).split())


# --- CSV / TSV -----------------------------------------------------------------------


def load_csv(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    text, warning = decode_text(data)
    if "\x00" in text:
        raise FileUnreadable("not a text file: it looks like binary data (check that the file is not mislabeled)")
    sample = text[:65536]
    default = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:  # one column, or too irregular to tell: the suffix's delimiter
        dialect = csv.excel_tab if default == "\t" else csv.excel
    csv.field_size_limit(16 * 1024 * 1024)
    rows = []
    try:
        for number, cells in enumerate(csv.reader(io.StringIO(text, newline=""), dialect), 1):
            rows.append((number, [" ".join(c.split()) for c in cells]))
    except csv.Error as exc:
        raise FileUnreadable(f"not a valid CSV file: {detail(exc)}") from exc
    unit = sheet_unit(None, rows)
    doc = _document(path, "csv", [unit] if unit else [])
    if warning:
        doc.warnings.append(warning)
    return doc
