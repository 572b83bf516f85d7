"""Parsing and redacting ledger store URLs."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit, urlunsplit

from pcnode.errors import LedgerError


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def scheme_of(url: str) -> str:
    """The URL scheme without a driver suffix: ``postgresql+psycopg`` -> ``postgresql``."""
    if not isinstance(url, str) or ":" not in url:
        raise LedgerError(f"ledger URL {url!r} has no scheme",
                          hint="use sqlite:///path/to/ledger.db or postgresql://user@host/db")
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def sqlite_path(url: str) -> tuple[str, dict[str, str]]:
    """The file path (or ``:memory:``) and query options of a ``sqlite:`` URL."""
    rest = url.split(":", 1)[1]
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    if rest in ("", "//", "///:memory:", "//:memory:"):
        return ":memory:", dict(parse_qsl(query))
    if not rest.startswith("///"):
        raise LedgerError(f"SQLite URL {url!r} is not of the form sqlite:///PATH",
                          hint="relative: sqlite:///ledger.db; absolute: sqlite:////var/x.db")
    return rest[3:], dict(parse_qsl(query))


def postgres_conninfo(url: str) -> str:
    """A libpq URI for psycopg: the driver suffix removed, ``postgres:`` normalised."""
    rest = url.split(":", 1)[1]
    return "postgresql:" + rest
