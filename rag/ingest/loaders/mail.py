"""Mail: EML through the email standard library, Outlook MSG through extract-msg.

The mail is one unit: its headers (from, to, cc, date, subject) and its body, plain text or
HTML through the shared HTML-to-text function; a forwarded mail inside it follows its body.
Each attachment in a format Enclave reads is read by that format's loader and becomes units
of its own, cited as "attachment NAME of 'SUBJECT'". An attachment that cannot be read is
noted and left out; the mail still indexes.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable
from pathlib import Path

from ...errors import EnclaveError, FileUnreadable
from ...types import LoadedDocument, PageText
from .common import LoadContext, clean, decode_text, detail, raise_if_out_of_memory
from .html import html_to_text
from .registry import format_for, loader_for

MAX_DEPTH = 3  # a mail attached to a mail attached to a mail…


def _headers_text(fields: Iterable[tuple[str, object]]) -> list[str]:
    return [f"{name}: {' '.join(str(value).split())}" for name, value in fields if any(c.isalnum() for c in str(value or ""))]


def _mail_label(subject: str) -> str:
    return f"mail '{subject}'" if subject else "mail"


def _attachment_units(name: str, data: bytes, subject: str, context: LoadContext, depth: int) -> list[PageText]:
    """The units of one attachment, or none (with a note) when it is not readable."""
    fmt = format_for(name)
    if fmt is None or not data or depth >= MAX_DEPTH:
        return []
    try:
        document = loader_for(fmt)(Path(name), data, context)
    except (EnclaveError, Exception) as exc:  # noqa: BLE001 - one attachment costs itself
        raise_if_out_of_memory(exc)
        context.warnings.append(f"attachment {name} could not be read ({detail(exc)})")
        return []
    prefix = f"attachment {name} of '{subject}'" if subject else f"attachment {name}"
    units = []
    for page in document.pages:
        if not page.text.strip():
            continue
        where = page.label or (f"page {page.number}" if page.number else "")
        # A table attachment keeps its rows and header, so its chunks still name columns.
        units.append(PageText(number=None, text=page.text, label=f"{prefix}, {where}" if where else prefix,
                              rows=page.rows, header=page.header))
    return units


# --- EML -----------------------------------------------------------------------------


def load_eml(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    try:
        message = email.message_from_bytes(data, policy=email.policy.default)
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(f"not a valid e-mail message: {detail(exc)}") from exc
    if not message.keys():
        raise FileUnreadable("not an e-mail message: it has no headers (check that the file is not mislabeled)")
    return LoadedDocument(path=str(path), kind="eml", pages=_eml_units(message, context, 0))


def _eml_units(message, context: LoadContext, depth: int) -> list[PageText]:
    subject = _header(message, "subject")
    lines = _headers_text((name.capitalize(), _header(message, name)) for name in ("from", "to", "cc", "date", "subject"))
    lines.append("")
    lines.append(_eml_body(message))
    attachments: list[PageText] = []
    for part in message.walk():
        if part is message:
            continue
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if hasattr(inner, "walk") and depth < MAX_DEPTH:
                forwarded = _eml_units(inner, context, depth + 1)
                if forwarded:
                    lines += ["", "Forwarded message:", forwarded[0].text]
                    attachments += forwarded[1:]
            continue
        if part.is_attachment() or (part.get_filename() and not part.is_multipart()):
            name = part.get_filename() or "attachment"
            try:
                payload = part.get_payload(decode=True) or b""
            except Exception as exc:
                context.warnings.append(f"attachment {name} could not be decoded ({detail(exc)})")
                continue
            attachments += _attachment_units(name, payload, subject, context, depth + 1)
    mail = PageText(number=None, text=clean("\n".join(lines)).strip(), label=_mail_label(subject))
    return [mail] + attachments


def _header(message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:  # a malformed header: keep the raw text rather than lose the mail
        value = message.get_all(name, failobj=[""])[0] if hasattr(message, "get_all") else ""
    return " ".join(str(value).split()) if value is not None else ""


def _eml_body(message) -> str:
    """The plain body if there is one, else the HTML body as text; forwarded mails and
    attachments are not part of it."""
    try:
        part = message.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        return ""
    try:
        content = part.get_content()
    except Exception:  # an unknown charset: decode the bytes as best we can
        content = decode_text(part.get_payload(decode=True) or b"")[0]
    if part.get_content_type() == "text/html":
        return html_to_text(content)
    return content


# --- MSG -----------------------------------------------------------------------------


def load_msg(path: Path, data: bytes, context: LoadContext) -> LoadedDocument:
    import extract_msg

    try:
        message = extract_msg.openMsg(data)
    except Exception as exc:
        raise_if_out_of_memory(exc)
        raise FileUnreadable(f"not a valid Outlook message (the file may be damaged or mislabeled): {detail(exc)}") from exc
    try:
        return LoadedDocument(path=str(path), kind="msg", pages=_msg_units(message, context, 0))
    finally:
        message.close()


def _msg_units(message, context: LoadContext, depth: int) -> list[PageText]:
    subject = " ".join((message.subject or "").split())
    sender = message.sender
    # The sender and recipient properties Outlook shows can differ from the transport
    # headers; a person may search for either.
    address = message.getStringStream("__substg1.0_0C1F")
    display_to = message.getStringStream("__substg1.0_0E04")
    lines = _headers_text([
        ("From", f"{sender} ({address})" if address and sender and address not in sender else sender or address),
        ("To", f"{message.to} ({display_to})" if display_to and message.to and display_to not in message.to
         else message.to or display_to),
        ("Cc", message.cc), ("Date", message.date), ("Subject", subject),
    ])
    body = message.body or ""
    if not body.strip() and message.htmlBody:
        body = html_to_text(message.htmlBody)
    lines += ["", body]
    attachments: list[PageText] = []
    for attachment in message.attachments:
        name = attachment.longFilename or attachment.shortFilename or "attachment"
        payload = attachment.data
        if isinstance(payload, bytes):
            attachments += _attachment_units(name, payload, subject, context, depth + 1)
        elif hasattr(payload, "subject") and depth < MAX_DEPTH:  # an attached Outlook message
            inner = _msg_units(payload, context, depth + 1)
            lines += ["", "Attached message:", inner[0].text]
            attachments += inner[1:]
    mail = PageText(number=None, text=clean("\n".join(lines)).strip(), label=_mail_label(subject))
    return [mail] + attachments
