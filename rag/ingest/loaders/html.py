"""HTML to visible text: one function, `html_to_text`, used for web pages, e-book chapters
and HTML mail bodies. Nothing a page references (images, stylesheets, scripts) is fetched."""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
from bs4.dammit import EncodingDetector

from ...types import LoadedDocument, PageText
from .common import BOMS, LoadContext

_INVISIBLE_TAGS = (
    "script", "style", "noscript", "template", "head", "svg", "iframe", "object",
    "embed", "canvas",
)  # fmt: skip
_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "br", "caption", "dd", "details",
    "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p",
    "pre", "section", "summary", "table", "tr", "ul",
)  # fmt: skip
_CELL_TAGS = ("td", "th")
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
# Marks a line break we want while HTML's own whitespace is collapsed: a Unicode
# noncharacter, so neither real text nor the whitespace pattern matches it.
_BREAK = "\ufdd0"

# lxml (a dependency of python-docx) parses large pages several times faster.
_HTML_PARSER = "lxml" if importlib.util.find_spec("lxml") else "html.parser"


def decode_html(data: bytes) -> str:
    """BOM, then the page's declared charset, then UTF-8, then Windows-1252."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    candidates = [declared] if declared else []
    candidates += ["utf-8"]
    for encoding in candidates:
        try:
            return data.decode(_html_codec(encoding))
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", errors="replace")


def _html_codec(label: str) -> str:
    # Browsers read Latin-1 and ASCII labels as Windows-1252; so do we.
    label = label.strip().lower()
    return "cp1252" if label in {"iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii"} else label


def html_to_text(markup: str | bytes) -> str:
    """The text a browser shows: hidden parts dropped, blocks on their own lines, table
    cells separated by ' | '."""
    if isinstance(markup, bytes):
        markup = decode_html(markup)
    markup = markup.replace(_BREAK, " ")
    with warnings.catch_warnings():
        # XHTML (e.g. inline-XBRL filings, e-book chapters) is read as HTML on purpose: browsers do too.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(markup, _HTML_PARSER)
    hidden = soup.find_all(_INVISIBLE_TAGS)
    hidden += soup.find_all(attrs={"hidden": True})
    hidden += soup.find_all(style=_HIDDEN_STYLE)
    for tag in hidden:
        tag.decompose()
    # Keep the line structure of preformatted text before whitespace is collapsed.
    for pre in soup.find_all(["pre", "textarea"]):
        for string in pre.find_all(string=True):
            string.replace_with(string.replace("\n", _BREAK))
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before(_BREAK)
        tag.insert_after(_BREAK)
    for cell in soup.find_all(_CELL_TAGS):
        cell.insert_after(" | ")
    # get_text skips comments, doctypes and processing instructions.
    text = re.sub(r"\s+", " ", soup.get_text())
    lines = (line.strip(" |") for line in text.split(_BREAK))
    return "\n".join(line for line in lines if line)


def load_html(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    return LoadedDocument(path=str(path), kind="html", pages=[PageText(None, html_to_text(data))])
