"""Files that hang or exhaust a parser cost that one file, through the real pipeline."""

from __future__ import annotations

import zipfile
import zlib

from rag.config import Settings
from rag.engine import Engine
from tests.conftest import CORPUS, require


def _write_pdf(objects: list[bytes]) -> bytes:
    """A PDF of the given objects (numbered from 1), with its cross-reference table."""
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


_HEAD = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
]
_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    packed = zlib.compress(data, 6)
    return b"<< %s /Length %d /Filter /FlateDecode >>\nstream\n" % (extra, len(packed)) + packed + b"\nendstream"


def _pdf(content: bytes) -> bytes:
    """A minimal one-page PDF whose page content is `content`, Flate-compressed."""
    return _write_pdf(_HEAD + [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        _stream(content),
        _FONT,
    ])


def _endless_pdf(depth: int = 13, leaf_ops: int = 20_000) -> bytes:
    """A page that draws form Fm0, which draws Fm1 twice, ... down to a form of `leaf_ops` text
    operators: 2^(depth-1) x leaf_ops operators (pypdf stops after 5,000 forms, still 100
    million), from a 10 KB file. No CPU reads that within the time limit, however fast."""
    objects = _HEAD + [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> /XObject << /Fm0 6 0 R >> >> >>",
        _stream(b"/Fm0 Do"),
        _FONT,
    ]
    for level in range(depth):
        number = 6 + level
        if level < depth - 1:
            body = b"/Fm%d Do /Fm%d Do" % (level + 1, level + 1)
            resources = b"/Resources << /Font << /F1 5 0 R >> /XObject << /Fm%d %d 0 R >> >>" % (level + 1, number + 1)
        else:
            body = b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj 1 0 Td " * leaf_ops + b"ET"
            resources = b"/Resources << /Font << /F1 5 0 R >> >>"
        objects.append(_stream(body, b"/Type /XObject /Subtype /Form /BBox [0 0 612 792] " + resources))
    return _write_pdf(objects)


def _docx_bomb(path, megabytes: int) -> None:
    """A .docx whose document part inflates from ~1% of its size to `megabytes` MB."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/content-types"><Override PartName="/word/document.xml" ContentType="application/'
                   'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/'
                   'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
                   'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')
        with z.open("word/document.xml", "w", force_zip64=True) as part:
            part.write(b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                       b"<w:body><w:p><w:r><w:t>")
            block = b"a" * (16 << 20)
            for _ in range(megabytes // 16):
                part.write(block)
            part.write(b"</w:t></w:r></w:p></w:body></w:document>")


def test_a_hanging_parse_and_a_memory_bomb_fail_alone(tmp_path, real_embedder):
    folder = tmp_path / "batch"
    folder.mkdir()
    # A hundred million text operators behind nested forms: the parser grinds far past the limit.
    (folder / "endless.pdf").write_bytes(_endless_pdf())
    # 3 MB on disk, 400 MB once inflated: more than the reader may use.
    _docx_bomb(folder / "bomb.docx", 400)
    # A PDF bomb: pypdf's own decompression guard refuses it before memory runs out.
    (folder / "bomb.pdf").write_bytes(_pdf(b"\0" * (200 << 20)))
    (folder / "minimal-document.pdf").write_bytes(require(CORPUS / "pdf/001-trivial/minimal-document.pdf").read_bytes())
    (folder / "note.md").write_text("# Note\n\nThe quokka count in 2026 was 412.\n")

    settings = Settings(parse_timeout_s=4.0, parse_memory_mb=256)
    engine = Engine(tmp_path / "data", settings=settings, embedder=real_embedder)
    report = engine.index_all([folder])
    reasons = {f["path"].rsplit("/", 1)[1]: f["reason"] for f in report.failed}
    assert set(reasons) == {"endless.pdf", "bomb.docx", "bomb.pdf"}
    assert "took longer than 4 s" in reasons["endless.pdf"]
    assert "needed more than 256 MiB" in reasons["bomb.docx"]
    assert "decompression bomb" in reasons["bomb.pdf"]
    assert report.indexed == 2
    assert engine.search("quokka count", k=1)[0].path.endswith("note.md")
    # The readers were replaced: the next run works and settles everything from the catalog.
    again = engine.index_all([folder])
    assert again.unchanged == 2 and len(again.failed) == 3
    engine.close()
