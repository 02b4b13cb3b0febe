"""Where servers are, as a person reads it: host:port for messages and the status bar."""

from __future__ import annotations


def dsn_host(dsn: str) -> str:
    """host:port of a PostgreSQL connection string (key=value pairs or a postgresql:// URL),
    read without libpq, for messages and the status bar."""
    from urllib.parse import urlsplit

    if "://" in dsn:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    pairs = dict(item.split("=", 1) for item in dsn.split() if "=" in item)
    host = pairs.get("host", "").strip("'\"") or pairs.get("hostaddr", "").strip("'\"") or "localhost"
    return f"{host}:{pairs.get('port', '5432').strip(chr(39) + chr(34))}"
