"""EPUB 2 and 3 through ebooklib: one unit per chapter, in the book's reading order (its
spine), each chapter's XHTML through the shared HTML-to-text function. A chapter is named
by the table of contents, else by its first line."""

from __future__ import annotations

import io
import posixpath
import warnings
from pathlib import Path

from ...errors import FileUnreadable
from ...types import LoadedDocument, PageText
from .common import LoadContext, detail, raise_if_out_of_memory
from .html import html_to_text


def load_epub(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    import ebooklib
    from ebooklib import epub

    try:
        with warnings.catch_warnings():  # ebooklib warns about options it will change one day
            warnings.simplefilter("ignore")
            book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": False})
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(f"not a valid EPUB e-book (the file may be damaged, mislabeled or DRM-protected): "
                             f"{detail(exc)}") from exc
    titles = _toc_titles(book.toc)
    pages, number = [], 0
    for idref, _linear in book.spine:
        item = book.get_item_with_id(idref)
        if item is None or item.get_type() != ebooklib.ITEM_DOCUMENT:
            continue
        try:
            text = html_to_text(item.get_content())
        except Exception as exc:  # one bad chapter costs that chapter
            context.warnings.append(f"{item.get_name()}: could not be read ({detail(exc)})")
            continue
        if not text.strip():
            continue  # a cover picture or a blank page: not a chapter anyone cites
        number += 1
        title = titles.get(posixpath.normpath(item.get_name())) or text.strip().split("\n", 1)[0]
        title = " ".join(title.split())[:80]
        # The book's own title for the part ("Chapter 2", "The Grave of the Slave"): a
        # count of spine items would also count title pages and disagree with the book.
        label = f'chapter "{title}"' if title else f"part {number}"
        pages.append(PageText(number=None, text=text, label=label))
    return LoadedDocument(path=str(path), kind="epub", pages=pages)


def _toc_titles(toc) -> dict[str, str]:
    """The table of contents' title for each chapter file (the first entry that points to it)."""
    out: dict[str, str] = {}

    def walk(entries):
        for entry in entries:
            if isinstance(entry, tuple):  # (section, children)
                walk([entry[0]])
                walk(entry[1])
                continue
            href = getattr(entry, "href", None)
            title = getattr(entry, "title", None)
            if href and title:
                out.setdefault(posixpath.normpath(href.split("#", 1)[0]), title)

    walk(toc)
    return out
