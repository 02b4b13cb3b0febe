"""What every loader shares: its inputs, text decoding, and the small helpers for errors."""

from __future__ import annotations

import codecs
import io
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from charset_normalizer import from_bytes

from ...errors import FileUnreadable, PasswordRequired


@dataclass
class LoadContext:
    """What a loader may use besides the file's bytes."""

    passwords: Sequence[str] = ()
    ocr: bool = True  # read pages without a text layer, and images, by OCR
    # Called before each page read by OCR as (page number, pages to read): the reader
    # process gives that page its own time allowance and shows it as progress.
    on_ocr_page: Callable[[int, int], None] = lambda page, total: None
    warnings: list[str] = field(default_factory=list)


def detail(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clean(text: str) -> str:
    """One newline convention and no NULs, whatever the source."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")


def out_of_memory(exc: BaseException) -> bool:
    """zlib reports a failed allocation as zlib.error, not MemoryError."""
    return isinstance(exc, MemoryError) or (isinstance(exc, zlib.error) and "allocate" in str(exc))


def raise_if_out_of_memory(exc: BaseException) -> None:
    if out_of_memory(exc):  # a zip bomb: report the memory limit, not damage
        raise MemoryError(str(exc)) from exc


OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def is_ole(data: bytes) -> bool:
    return data.startswith(OLE_MAGIC)


def decrypt_office(path, data: bytes, passwords: Sequence[str], what: str, suffix: str) -> bytes:
    """The plain package inside a password-protected Office file (an OLE container holding
    `EncryptionInfo` and `EncryptedPackage`), or PasswordRequired. Anything else in an OLE
    container is an old binary format we do not read."""
    import msoffcrypto

    try:
        office = msoffcrypto.OfficeFile(io.BytesIO(data))
        encrypted = office.is_encrypted()
    except Exception as exc:
        raise FileUnreadable(f"not a valid {what} {suffix} file: it may be an old 97-2003 file (save it as "
                             f"{suffix} and add it again) or damaged ({detail(exc)})") from exc
    if not encrypted:
        raise FileUnreadable(f"not a {what} {suffix} file: it is an old 97-2003 binary file; save it as {suffix} "
                             "and add it again")
    for password in passwords:
        try:
            office = msoffcrypto.OfficeFile(io.BytesIO(data))
            office.load_key(password=password, verify_password=True)
            out = io.BytesIO()
            office.decrypt(out)
            return out.getvalue()
        except Exception:  # a wrong password, whatever the library calls it
            continue
    raise PasswordRequired(str(path), tried=len(passwords))


# --- text of unknown encoding ---------------------------------------------------------

# Longest BOMs first: the UTF-32-LE BOM starts with the UTF-16-LE one.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_WIDE_ENCODINGS = ("utf_16_le", "utf_16_be", "utf_32_le", "utf_32_be")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
NOT_TEXT = "not a text file: it looks like binary data (check that the file is not mislabeled)"


def decode_text(data: bytes) -> tuple[str, str | None]:
    """Decode bytes of unknown encoding; return the text and a warning, if any."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace"), None
    if b"\x00" in data:
        encoding = _wide_encoding(data)
        if encoding is None:
            raise FileUnreadable(NOT_TEXT)
        try:
            return data.decode(encoding), None
        except UnicodeDecodeError as exc:
            raise FileUnreadable(NOT_TEXT) from exc
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    # Not UTF-8: most such files on a desktop are Windows-1252 (a superset of Latin-1
    # for printable text). Latin-1 accepts every byte, for the few holes cp1252 has.
    try:
        return data.decode("cp1252"), "decoded as Windows-1252 (the file is not UTF-8)"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "decoded as Latin-1 (the file is not UTF-8)"


def _wide_encoding(data: bytes) -> str | None:
    """The UTF-16/32 variant of a BOM-less file, or None when its NULs look like binary.

    Text in UTF-16/32 has its NUL bytes at fixed offsets within each code unit (the
    high bytes of Latin characters); binary data has them anywhere.
    """
    sample = data[:8192]
    for unit, layouts in (
        (4, {(2, 3): "utf_32_le", (0, 1): "utf_32_be"}),
        (2, {(1,): "utf_16_le", (0,): "utf_16_be"}),
    ):
        if len(data) % unit:
            continue
        units = len(sample) // unit or 1
        nuls = [sample[i::unit].count(0) for i in range(unit)]
        for slots, encoding in layouts.items():
            in_slots = sum(nuls[i] for i in slots)
            regular = all(nuls[i] > 0.5 * units for i in slots)
            if regular and sum(nuls) - in_slots <= 0.02 * in_slots:
                return _confirm_wide(sample, encoding)
    return None


def _confirm_wide(sample: bytes, guess: str) -> str:
    # The statistical detector settles the rare cases the NUL layout leaves open
    # (e.g. UTF-32 text that also decodes as UTF-16).
    best = from_bytes(sample, cp_isolation=list(_WIDE_ENCODINGS)).best()
    return best.encoding if best is not None and best.encoding in _WIDE_ENCODINGS else guess


def looks_binary(text: str) -> bool:
    sample = text[:8192]
    return bool(sample) and len(_CONTROL.findall(sample)) > 0.05 * len(sample)
