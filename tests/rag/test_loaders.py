"""Loaders against real documents from the shared test corpus."""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import pytest

from rag.errors import FileSkipped, FileUnreadable, PasswordRequired
from rag.ingest.loaders import SUPPORTED_SUFFIXES, LoadContext, load
from rag.types import LoadedDocument

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
PDF = CORPUS / "pdf"
ENCRYPTED = CORPUS / "pdf-encrypted"
OFFICE = CORPUS / "office"

if not CORPUS.is_dir():
    pytest.skip(f"test corpus not found at {CORPUS}", allow_module_level=True)


def text_of(doc: LoadedDocument) -> str:
    return "\n\n".join(page.text for page in doc.pages)


# --- PDF corpus: page counts are ground truth from files.json ------------------------

PDF_ENTRIES = [
    entry for entry in json.loads((PDF / "files.json").read_text())["data"]
    if (PDF / entry["path"]).exists()
]  # fmt: skip
PASSWORD_PDF = "005-libreoffice-writer-password/libreoffice-writer-password.pdf"


def test_corpus_has_the_expected_pdfs():
    assert len(PDF_ENTRIES) >= 30
    assert any(entry["path"] == PASSWORD_PDF for entry in PDF_ENTRIES)


@pytest.mark.parametrize("entry", PDF_ENTRIES, ids=lambda e: e["path"].split("/")[0])
def test_pdf_page_count_matches_ground_truth(entry):
    path = PDF / entry["path"]
    passwords = ["openpassword"] if entry["path"] == PASSWORD_PDF else []
    try:
        doc = load(path, passwords=passwords)
    except FileSkipped as skipped:  # image-only PDF: still knows its page count
        assert skipped.page_count == entry["pages"]
        return
    assert doc.kind == "pdf"
    assert doc.path == str(path)
    assert doc.page_count == entry["pages"]
    assert [page.number for page in doc.pages] == list(range(1, entry["pages"] + 1))


def test_password_pdf_needs_its_password():
    path = PDF / PASSWORD_PDF
    with pytest.raises(PasswordRequired) as err:
        load(path)
    assert err.value.path == str(path)
    assert "password" in str(err.value)
    with pytest.raises(PasswordRequired, match="none of the 2"):
        load(path, passwords=["wrong", "also-wrong"])
    doc = load(path, passwords=["wrong", "openpassword"])
    assert doc.page_count == 1
    assert text_of(doc).strip()


def test_pdf_with_damaged_page_tree_keeps_its_page_count():
    doc = load(PDF / "017-unreadable-meta-data/unreadablemetadata.pdf")
    assert doc.page_count == 4  # as stated by its linearization header
    assert "Wirewound" in doc.pages[0].text
    assert "\ufffd" not in text_of(doc)
    assert any("damaged" in warning for warning in doc.warnings)


def test_image_only_pdf_without_ocr_is_skipped_but_keeps_its_page_count():
    with pytest.raises(FileSkipped, match="no text found in its 1 page") as err:
        load(PDF / "019-grayscale-image/grayscale-image.pdf", context=LoadContext(ocr=False))
    assert err.value.page_count == 1


def test_pdf_repair_messages_stay_out_of_the_log(caplog):
    caplog.set_level(logging.WARNING)
    load(PDF / "017-unreadable-meta-data/unreadablemetadata.pdf")
    assert not [r for r in caplog.records if r.name.startswith("pypdf")]


def test_a_failing_page_costs_only_that_page(monkeypatch):
    import pypdf

    original = pypdf.PageObject.extract_text
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("broken content stream")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pypdf.PageObject, "extract_text", flaky)
    # OCR off: with it on, the page that lost its text layer is read from its image instead.
    doc = load(PDF / "004-pdflatex-4-pages/pdflatex-4-pages.pdf", context=LoadContext(ocr=False))
    assert doc.page_count == 4
    assert doc.pages[1].text == ""
    assert doc.pages[0].text.strip() and doc.pages[2].text.strip()
    assert any("page 2" in w and "broken content stream" in w for w in doc.warnings)


def test_pdf_text_is_extracted_per_page():
    doc = load(PDF / "004-pdflatex-4-pages/pdflatex-4-pages.pdf")
    assert all(page.text.strip() for page in doc.pages)
    assert len({page.text for page in doc.pages}) == 4


# --- encryption matrix ---------------------------------------------------------------

# File -> a password that opens it. `encrypted-file.pdf` is not in the corpus README;
# its password comes from the upstream test suite the file was taken from.
NEEDS_PASSWORD = {
    "r2-user-password.pdf": "asdfzxcv",
    "r3-user-password.pdf": "asdfzxcv",
    "r4-user-password.pdf": "asdfzxcv",
    "r4-aes-user-password.pdf": "asdfzxcv",
    "r6-both-passwords.pdf": "foo",
    "crazyones-encrypted-256.pdf": "password",
    "encrypted-file.pdf": "test",
}
# The r5/r6 "user-password" files also have an empty *owner* password, so the empty
# password opens them, as it does in other readers that try it as both kinds.
OPENS_WITHOUT_PASSWORD = {
    "unencrypted.pdf",
    "r2-empty-password.pdf",
    "r2-owner-password.pdf",
    "r3-empty-password.pdf",
    "r4-owner-password.pdf",
    "r4-aes-v2-no-key-length.pdf",
    "r5-empty-password.pdf",
    "r5-owner-password.pdf",
    "r5-user-password.pdf",
    "r6-empty-password.pdf",
    "r6-owner-password.pdf",
    "r6-user-password.pdf",
    "issue-297.pdf",
}
DOCUMENTED_PASSWORDS = ["asdfzxcv", "foo", "bar", "password"]


def test_encryption_matrix_covers_every_file():
    present = {p.name for p in ENCRYPTED.glob("*.pdf")}
    assert present == set(NEEDS_PASSWORD) | OPENS_WITHOUT_PASSWORD


@pytest.mark.parametrize("name", sorted(NEEDS_PASSWORD))
def test_user_password_pdf_asks_then_opens(name):
    with pytest.raises(PasswordRequired):
        load(ENCRYPTED / name)
    with pytest.raises(PasswordRequired):
        load(ENCRYPTED / name, passwords=["not-it"])
    passwords = ["not-it", *DOCUMENTED_PASSWORDS, NEEDS_PASSWORD[name]]
    doc = load(ENCRYPTED / name, passwords=passwords)
    assert doc.page_count >= 1
    assert text_of(doc).strip()


def test_owner_password_also_opens_a_user_password_pdf():
    doc = load(ENCRYPTED / "r6-both-passwords.pdf", passwords=["bar"])
    assert text_of(doc).strip()


def test_aes_pdf_text_matches_the_original():
    plain = text_of(load(ENCRYPTED / "unencrypted.pdf"))
    assert text_of(load(ENCRYPTED / "r4-aes-user-password.pdf", passwords=["asdfzxcv"])) == plain


@pytest.mark.parametrize("name", sorted(OPENS_WITHOUT_PASSWORD))
def test_pdf_opens_without_asking(name):
    doc = load(ENCRYPTED / name)
    assert doc.page_count >= 1
    assert text_of(doc).strip()


def test_owner_password_pdf_has_the_same_text_as_the_original():
    plain = text_of(load(ENCRYPTED / "unencrypted.pdf"))
    for name in ("r2-owner-password.pdf", "r6-owner-password.pdf"):
        assert text_of(load(ENCRYPTED / name)) == plain
    assert text_of(load(ENCRYPTED / "r6-both-passwords.pdf", passwords=["foo"])) == plain


# --- text encodings ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "fake-text-utf-16.txt",
        "fake-text-utf-16-le.txt",
        "fake-text-utf-16-be.txt",
        "fake-text-utf-32.txt",
    ],
)
def test_wide_unicode_text_decodes(name):
    doc = load(OFFICE / name)
    text = text_of(doc)
    assert doc.kind == "text"
    assert doc.pages[0].number is None
    assert "This is a test document to use for unit tests." in text
    assert "\x00" not in text and "\ufeff" not in text


def test_utf16_csv_decodes():
    text = text_of(load(OFFICE / "stanley-cups-utf-16.csv"))
    assert text.startswith("Stanley Cups")
    assert "\x00" not in text


def test_non_utf8_markdown_keeps_its_umlauts():
    doc = load(OFFICE / "umlauts-non-utf8.md")
    assert doc.kind == "markdown"
    assert "können" in text_of(doc)
    assert "äöüß" in text_of(doc)
    assert doc.warnings  # the fallback decoding is reported


def test_windows_1252_text_decodes(tmp_path):
    path = tmp_path / "invoice.txt"
    path.write_bytes("Preis: 15,50 € – „schön“".encode("cp1252"))
    doc = load(path)
    assert doc.pages[0].text == "Preis: 15,50 € – „schön“"
    assert doc.warnings


def test_bomless_utf16_in_tmp_decodes(tmp_path):
    path = tmp_path / "export.txt"
    path.write_bytes("name,city\nZoë,Köln\n".encode("utf-16-be"))
    assert load(path).pages[0].text == "name,city\nZoë,Köln\n"


def test_newlines_are_normalized(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"one\r\ntwo\rthree\n")
    assert load(path).pages[0].text == "one\ntwo\nthree\n"


@pytest.mark.parametrize("name", ["empty.txt", "fake-text-all-whitespace.txt"])
def test_text_without_content_is_skipped(name):
    with pytest.raises(FileSkipped, match="no text"):
        load(OFFICE / name)


def test_binary_data_named_txt_is_unreadable(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(FileUnreadable, match="not a text file"):
        load(path)


def test_text_named_pdf_is_unreadable(tmp_path):
    path = tmp_path / "report.pdf"
    path.write_bytes((OFFICE / "fake-text.txt").read_bytes())
    with pytest.raises(FileUnreadable, match="not a valid PDF"):
        load(path)


def test_truncated_pdf_is_unreadable_or_partial(tmp_path):
    data = (PDF / "004-pdflatex-4-pages/pdflatex-4-pages.pdf").read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 3])
    try:
        doc = load(path)
    except (FileUnreadable, FileSkipped):
        return
    assert isinstance(doc, LoadedDocument)


def test_garbage_docx_is_unreadable(tmp_path):
    path = tmp_path / "letter.docx"
    path.write_bytes(b"this is not a zip archive at all\n" * 20)
    with pytest.raises(FileUnreadable, match="not a valid Word document"):
        load(path)


def test_zip_without_word_parts_is_unreadable(tmp_path):
    path = tmp_path / "letter.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(FileUnreadable):
        load(path)


def test_legacy_doc_named_docx_says_what_to_do(tmp_path):
    path = tmp_path / "old.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504)
    with pytest.raises(FileUnreadable, match="save it as"):
        load(path)


@pytest.mark.parametrize("name, shown", [("deck.key", ".key"), ("sheet.numbers", ".numbers"), ("a.zip", ".zip")])
def test_unsupported_type_is_skipped_with_its_suffix(tmp_path, name, shown):
    (tmp_path / name).write_bytes(b"PK\x03\x04 whatever")
    with pytest.raises(FileSkipped, match=f"unsupported file type \\{shown}"):
        load(tmp_path / name)


def test_file_without_extension_is_skipped(tmp_path):
    path = tmp_path / "README"
    path.write_text("hello")
    with pytest.raises(FileSkipped, match="no extension"):
        load(path)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(FileUnreadable, match="could not read"):
        load(tmp_path / "gone.txt")


def test_supported_suffixes():
    assert {".pdf", ".txt", ".md", ".html", ".docx", ".csv", ".pptx", ".epub", ".png"} <= SUPPORTED_SUFFIXES
    assert ".doc" not in SUPPORTED_SUFFIXES and ".ppt" not in SUPPORTED_SUFFIXES


# --- HTML ----------------------------------------------------------------------------


def test_html_keeps_visible_text_and_drops_scripts():
    doc = load(OFFICE / "example-with-scripts.html")
    text = text_of(doc)
    assert doc.kind == "html"
    assert "Belarusian" in text
    assert "jQuery" not in text and "function(" not in text and "var " not in text
    assert "<script" not in text and "<div" not in text


def test_cp1252_html_decodes():
    text = text_of(load(OFFICE / "fake-html-cp1252.html"))
    assert "Die schöne Frau" in text
    assert "15,50 €" in text
    assert "El niño" in text
    # <pre> keeps its lines
    assert "\nL'été était très chaud" in text


def test_utf16_html_decodes():
    text = text_of(load(OFFICE / "example-steelJIS-datasheet-utf-16.html"))
    assert "SNB22-3" in text
    assert "\x00" not in text


def test_html_blocks_become_lines_and_inline_tags_do_not(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<h1>Title</h1><p>One <b>bold</b>\n  word.</p><!-- hidden note -->"
        "<table><tr><td>a</td><td>b</td></tr></table><script>alert(1)</script>"
        "<img src='https://example.invalid/x.png'></body></html>",
        encoding="utf-8",
    )
    assert load(path).pages[0].text == "Title\nOne bold word.\na | b"


# --- DOCX ----------------------------------------------------------------------------


def test_docx_table_cells_are_extracted():
    doc = load(OFFICE / "fake_table.docx")
    text = text_of(doc)
    assert doc.kind == "docx"
    assert doc.pages[0].number is None
    assert " | " in text


def test_docx_tables_and_paragraphs():
    text = text_of(load(OFFICE / "docx-tables.docx"))
    assert " | " in text
    assert len(text.splitlines()) > 3


def test_docx_headers_and_footers_are_included():
    text = text_of(load(OFFICE / "docx-hdrftr.docx"))
    assert text.startswith("Main document")
    assert "First header para" in text  # header
    assert "Table cell1 | Table cell2" in text  # table in the header
    assert "cell1" in text and "para2" in text  # footer with a table
    # a vertically merged continuation cell's leftover text is not shown by Word
    assert "I should not be included" not in text


def test_large_docx_loads():
    doc = load(OFFICE / "handbook-872p.docx")
    assert len(text_of(doc)) > 500_000


@pytest.mark.parametrize("name", ["grid_offset_error.docx", "tables-with-incomplete-rows.docx"])
def test_awkward_docx_tables_load(name):
    text = text_of(load(OFFICE / name))
    assert text.strip()


# --- sweep: every file ends in exactly one known state --------------------------------


SWEEP = sorted(
    p for folder in (OFFICE, ENCRYPTED) for p in folder.rglob("*") if p.is_file()
)


@pytest.mark.parametrize("path", SWEEP, ids=lambda p: str(p.relative_to(CORPUS)))
def test_sweep_every_file_ends_in_a_known_state(path):
    try:
        doc = load(path)
    except (FileSkipped, FileUnreadable, PasswordRequired) as expected:
        assert str(expected)
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            assert isinstance(expected, FileSkipped)
        return
    assert isinstance(doc, LoadedDocument)
    assert text_of(doc).strip()
    assert doc.path == str(path)
