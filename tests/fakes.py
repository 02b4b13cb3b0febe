"""Fakes for unit tests only: integration tests use the real models and a real store."""

from __future__ import annotations

import hashlib
import re

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")


class WordTokenizer:
    """Counts words and punctuation as tokens, like a word-piece tokenizer roughly would."""

    def count(self, texts):
        return [len(_TOKEN.findall(t)) for t in texts]

    def offsets(self, text):
        return [m.span() for m in _TOKEN.finditer(text)]


class HashEmbedder(WordTokenizer):
    """Bag-of-words vectors hashed into 64 dimensions: similar words, similar vectors."""

    name = "fake-hash-embedder"
    max_tokens = 254

    def __init__(self, name: str = "fake-hash-embedder", dim: int = 64):
        self.name = name
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    def warm_up(self) -> None:
        pass

    def embed(self, texts):
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % self._dim] += 1.0
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else out[i]
            if not norm:
                out[i, 0] = 1.0
        return out


def text_pdf(path, pages: list[list[str]]) -> None:
    """A PDF whose pages hold these lines of text (Helvetica, one line under the other), as a
    word processor's export has them: each line its own line in the text layer. No library
    writes PDFs here, and a test's own lines say exactly what its pages hold."""

    def escape(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None,
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    kids = []
    for lines in pages:
        body = "BT /F1 11 Tf 14 TL 72 760 Td " + " ".join(f"({escape(x)}) Tj T*" for x in lines) + " ET"
        data = body.encode("cp1252")
        objects.append(f"<< /Length {len(data)} >>\nstream\n{body}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {len(objects)} 0 R >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{obj}\nendobj\n".encode("cp1252")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    with open(path, "wb") as f:
        f.write(bytes(out))
