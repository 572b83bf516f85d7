"""Ledger entries: one audit record per event, its canonical body, hash and signature.

An entry's **body** is a canonical JSON object (:mod:`ledger.encoding`) with
the keys ``v`` (format version), ``index``, ``prev`` (hex hash of the previous
entry; 64 zeros for entry 0), ``event``, ``time`` (RFC 3339, µs, UTC), ``node``,
the optional audit fields below when set, and ``extra`` when non-empty.
Unset fields are omitted, never written as ``null``, so an entry has exactly
one body.

* leaf hash  = SHA-256(0x00 || body)                 (RFC 9162 §2.1.1 leaf)
* signature  = Ed25519(node key, "pcnode/ledger/entry/v1" || 0x00 || leaf hash)

Because the body holds ``prev``, each leaf hash commits to the whole chain
before it. The audit fields cover the items of the Chengdu platform's usage
log (授权系统标识/授权操作员, 使用系统标识/使用用户, 访问方式, 访问时间, 数据量).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pcnode.errors import InvalidInput

from .encoding import MAX_SAFE_INT, canonical_json, parse_canonical
from .events import (
    EVENT_PATTERN,
    MAX_EVENT_CHARS,
    NODE_PATTERN,
    PARTIES_KEY,
    check_node,
    format_parties,
    parse_parties,
)
from .merkle import HASH_SIZE, hash_leaf
from .timefmt import format_time, parse_canonical_time

#: Version written in every body (``v``); readers reject versions they do not know.
ENTRY_FORMAT_VERSION = 1

#: ``prev`` of entry 0.
ZERO_HASH = bytes(HASH_SIZE)

#: Domain separator of entry signatures, so an entry signature can never be
#: replayed as a checkpoint, receipt or bundle signature (or vice versa).
ENTRY_SIGNING_DOMAIN = b"pcnode/ledger/entry/v1\x00"

#: Text audit fields and their maximum length in characters. Bounded so that a
#: caller cannot bloat the ledger (and every verifier's memory) with one entry.
TEXT_FIELDS: dict[str, int] = {
    "user": 256,            # acting user (使用用户标识)
    "grant_id": 256,        # authorising system id: the grant (授权系统标识)
    "authorised_by": 256,   # authorising operator (授权操作员)
    "peer": 1024,           # consuming business system: the peer node(s) (使用系统标识);
                            # several peers of a multi-party job are comma-separated
    "dataset": 256,         # dataset resource code
    "operation": 64,        # access method: psi, stats, fl, ... (访问方式)
    "mode": 64,             # output mode of the operation
    "purpose": 1024,        # declared purpose (使用目的)
    "job_id": 256,
    "status": 64,
    "error": 4096,
}
#: Data-volume fields: non-negative integers (数据量).
COUNT_FIELDS: tuple[str, ...] = ("rows_in", "rows_out", "bytes_in", "bytes_out")
#: Digest fields: lower-case hex of 16 to 64 bytes (SHA-256 gives 32).
DIGEST_FIELDS: tuple[str, ...] = ("params_digest", "result_digest", "transcript_hash")
#: Every optional audit field, in documentation order.
OPTIONAL_FIELDS: tuple[str, ...] = (*TEXT_FIELDS, *COUNT_FIELDS, *DIGEST_FIELDS)

#: ``extra`` limits: key count, key shape and string value length.
MAX_EXTRA_KEYS = 64
MAX_EXTRA_VALUE_CHARS = 65536
EXTRA_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_.\-]{0,63}")
_DIGEST_PATTERN = re.compile(r"(?:[0-9a-f]{2}){16,64}")

_COUNT, _DIGEST = 0, -1
#: Per optional field: its text length limit (> 0), or _COUNT, or _DIGEST.
_FIELD_RULES: dict[str, int] = {**TEXT_FIELDS, **dict.fromkeys(COUNT_FIELDS, _COUNT),
                                **dict.fromkeys(DIGEST_FIELDS, _DIGEST)}

_REQUIRED_KEYS = ("v", "index", "prev", "event", "time", "node")
_ALL_KEYS = frozenset((*_REQUIRED_KEYS, *OPTIONAL_FIELDS, "extra"))

Scalar = str | int | bool | None


#: Names already found valid (event, node, peer, extra key, parties), so a
#: verifier checks each distinct value against its pattern once, not once per
#: entry. Cleared when full: a cache, not a limit.
_VALID_NAMES: set[tuple[str, str]] = set()
_VALID_NAMES_MAX = 4096


def _valid_name(kind: str, value: str, valid: Callable[[str], bool]) -> bool:
    key = (kind, value)
    if key in _VALID_NAMES:
        return True
    if not valid(value):
        return False
    if len(_VALID_NAMES) >= _VALID_NAMES_MAX:
        _VALID_NAMES.clear()
    _VALID_NAMES.add(key)
    return True


def _is_node(value: str) -> bool:
    return NODE_PATTERN.fullmatch(value) is not None


def _is_event(value: str) -> bool:
    return len(value) <= MAX_EVENT_CHARS and EVENT_PATTERN.fullmatch(value) is not None


def _is_peer(value: str) -> bool:
    return all(NODE_PATTERN.fullmatch(p) for p in value.split(","))


def _is_extra_key(value: str) -> bool:
    return EXTRA_KEY_PATTERN.fullmatch(value) is not None


def _is_parties(value: str) -> bool:
    names = value.split(",")
    return bool(names) and names == sorted(set(names)) and all(map(_is_node, names))


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"field {name} must be text, not {type(value).__name__}")
    if len(value) > TEXT_FIELDS[name]:
        raise InvalidInput(f"field {name} is longer than {TEXT_FIELDS[name]} characters",
                           hint="shorten it or store a digest in params_digest")
    if name == "peer" and not _valid_name("peer", value, _is_peer):
        for part in value.split(","):
            check_node(part, "peer")  # raises, naming the bad part
    return value


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAFE_INT:
        raise InvalidInput(f"field {name} must be a non-negative integer below 2**53",
                           hint="pass the row or byte count as an int")
    return value


def _check_digest(name: str, value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).hex()
    if not isinstance(value, str) or not _DIGEST_PATTERN.fullmatch(value):
        raise InvalidInput(f"field {name} must be a lower-case hex digest of 16-64 bytes",
                           hint="pass hashlib.sha256(...).hexdigest() or the raw bytes")
    return value


def _check_extra(extra: Any) -> dict[str, Scalar]:
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise InvalidInput("extra must be a dict of name -> str/int/bool/None")
    if len(extra) > MAX_EXTRA_KEYS:
        raise InvalidInput(f"extra has more than {MAX_EXTRA_KEYS} keys")
    out: dict[str, Scalar] = {}
    for key, value in extra.items():
        if not isinstance(key, str) or not _valid_name("extra", key, _is_extra_key):
            raise InvalidInput(f"extra key {key!r} is not valid",
                               hint="use lower-case words: letters, digits, '_', '.', '-'")
        if key == PARTIES_KEY and value is not None and not (
                type(value) is str and _valid_name("parties", value, _is_parties)):
            value = format_parties(parse_parties(value))
        if isinstance(value, float):
            raise InvalidInput(f"extra[{key!r}] is a float; floats have no canonical encoding",
                               hint="pass a decimal string, e.g. str(epsilon) or f'{x:.6g}'")
        if isinstance(value, bool) or value is None:
            pass
        elif isinstance(value, int):
            if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                raise InvalidInput(f"extra[{key!r}] is outside ±(2**53-1)",
                                   hint="write it as a decimal string")
        elif isinstance(value, str):
            if len(value) > MAX_EXTRA_VALUE_CHARS:
                raise InvalidInput(f"extra[{key!r}] is longer than {MAX_EXTRA_VALUE_CHARS}")
        else:
            raise InvalidInput(f"extra[{key!r}] must be str, int, bool or None, "
                               f"not {type(value).__name__}")
        out[key] = value
    return out


def validate_fields(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Scalar]]:
    """Check caller-supplied audit fields; return (optional fields, extra), normalised.

    Unknown names raise :class:`InvalidInput` listing the valid ones. ``None``
    values mean "not set" and are dropped.
    """
    out: dict[str, Any] = {}
    extra: dict[str, Scalar] = {}
    rules = _FIELD_RULES
    for name, value in fields.items():
        # fast paths for the common, valid cases (this runs on every append)
        rule = rules.get(name)
        kind = type(value)
        if rule is not None and rule > 0 and kind is str and len(value) <= rule \
                and name != "peer":
            out[name] = value
        elif rule == _COUNT and kind is int and 0 <= value <= MAX_SAFE_INT:
            out[name] = value
        elif name == "extra":
            extra = _check_extra(value)
        elif value is None:
            continue
        elif name in TEXT_FIELDS:
            out[name] = _check_text(name, value)
        elif name in COUNT_FIELDS:
            out[name] = _check_count(name, value)
        elif name in DIGEST_FIELDS:
            out[name] = _check_digest(name, value)
        else:
            raise InvalidInput(f"unknown entry field {name!r}",
                               hint=f"use one of {', '.join(OPTIONAL_FIELDS)}, "
                                    "or put it in extra={...}")
    return out, extra


def make_body(index: int, prev_hash: bytes, event: str, time_us: int, node: str,
              fields: Mapping[str, Any], extra: Mapping[str, Scalar]) -> dict[str, Any]:
    """The body object of an entry (validated fields in, canonical-ready dict out)."""
    body: dict[str, Any] = {
        "v": ENTRY_FORMAT_VERSION, "index": index, "prev": prev_hash.hex(),
        "event": event, "time": format_time(time_us), "node": node,
    }
    body.update(fields)
    if extra:
        body["extra"] = dict(extra)
    return body


def entry_signing_message(leaf: bytes) -> bytes:
    """The exact bytes an entry signature covers."""
    return ENTRY_SIGNING_DOMAIN + leaf


def sign_leaf(key: Ed25519PrivateKey | Callable[[bytes], bytes], leaf: bytes) -> bytes:
    """Sign an entry's leaf hash with the node key (or a signer from ``make_signer``)."""
    sign = key.sign if isinstance(key, Ed25519PrivateKey) else key
    return sign(entry_signing_message(leaf))


@dataclass(frozen=True)
class Entry:
    """One ledger entry, decoded from its canonical body.

    ``time`` is microseconds since the epoch (UTC); ``entry_hash`` is the RFC
    9162 leaf hash of the body; ``signature`` is the node's Ed25519 signature
    over it. Optional audit fields are ``None`` when not set.
    """

    index: int
    event: str
    time: int
    node: str
    prev_hash: bytes
    entry_hash: bytes
    signature: bytes
    user: str | None = None
    grant_id: str | None = None
    authorised_by: str | None = None
    peer: str | None = None
    dataset: str | None = None
    operation: str | None = None
    mode: str | None = None
    purpose: str | None = None
    job_id: str | None = None
    status: str | None = None
    error: str | None = None
    rows_in: int | None = None
    rows_out: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    params_digest: str | None = None
    result_digest: str | None = None
    transcript_hash: str | None = None
    extra: Mapping[str, Scalar] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def time_rfc3339(self) -> str:
        """The entry time in canonical RFC 3339 form."""
        return format_time(self.time)

    @property
    def parties(self) -> list[str]:
        """Parties named by ``extra['parties']`` (empty for a local event)."""
        return parse_parties(self.extra.get(PARTIES_KEY))

    def body_dict(self) -> dict[str, Any]:
        """The body object (what is hashed), as a dict."""
        fields = {n: getattr(self, n) for n in OPTIONAL_FIELDS if getattr(self, n) is not None}
        return make_body(self.index, self.prev_hash, self.event, self.time, self.node,
                         fields, self.extra)

    def body(self) -> bytes:
        """The canonical body bytes (what the leaf hash covers)."""
        return canonical_json(self.body_dict())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view: the fields, time as RFC 3339, hashes and signature as hex."""
        out: dict[str, Any] = {"index": self.index, "event": self.event,
                               "time": self.time_rfc3339, "node": self.node}
        for name in OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out["extra"] = dict(self.extra)
        out["prev_hash"] = self.prev_hash.hex()
        out["entry_hash"] = self.entry_hash.hex()
        out["signature"] = self.signature.hex()
        return out

    @classmethod
    def from_body(cls, body: bytes, signature: bytes) -> Entry:
        """Decode canonical ``body`` bytes; raise InvalidInput if malformed."""
        return decode_body(parse_canonical(body), hash_leaf(body), signature)


_REQUIRED_SET = frozenset(_REQUIRED_KEYS)
_OPTIONAL_SET = frozenset(OPTIONAL_FIELDS)
_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def _bad(message: str) -> InvalidInput:
    return InvalidInput(f"entry body {message}", hint="the entry was altered or is not a "
                        "pcnode ledger entry")


def check_body(obj: dict[str, Any]) -> int:
    """Check every key and value of a parsed body; return its time (µs).

    One flat pass with exact type checks (``True`` is not an int here): this
    runs once per entry in a full verify, so it avoids per-field calls and
    checks each distinct name (event, node, peer, extra key) only once.
    """
    keys = obj.keys()
    if not _REQUIRED_SET <= keys:
        raise _bad(f"lacks {', '.join(sorted(_REQUIRED_SET - keys))}")
    if not keys <= _ALL_KEYS:
        raise _bad(f"has unknown keys {sorted(keys - _ALL_KEYS)}")
    if obj["v"] != ENTRY_FORMAT_VERSION or type(obj["v"]) is not int:
        raise InvalidInput(f"entry format version {obj['v']!r} is not supported",
                           hint="upgrade pcnode to read this ledger")
    index = obj["index"]
    if type(index) is not int or index < 0:
        raise _bad("index is not a non-negative integer")
    prev = obj["prev"]
    if type(prev) is not str or not _HEX_HASH.fullmatch(prev):
        raise _bad("prev is not a 32-byte lower-case hex hash")
    event = obj["event"]
    if type(event) is not str or not _valid_name("event", event, _is_event):
        raise _bad("event name is not valid")
    node = obj["node"]
    if type(node) is not str or not _valid_name("node", node, _is_node):
        raise _bad("node name is not valid")
    time_us = parse_canonical_time(obj["time"])
    for name, value in obj.items():
        rule = _FIELD_RULES.get(name)
        if rule is None:
            continue  # a required key, checked above, or extra, checked below
        if rule > 0:  # text of at most ``rule`` characters
            if type(value) is not str or len(value) > rule:
                raise _bad(f"field {name} is not text of at most {rule} characters")
            if name == "peer" and not _valid_name("peer", value, _is_peer):
                raise _bad("peer is not a node name or a comma-separated list of them")
        elif rule == _COUNT:
            if type(value) is not int or not 0 <= value <= MAX_SAFE_INT:
                raise _bad(f"field {name} is not a non-negative integer")
        elif type(value) is not str or not _DIGEST_PATTERN.fullmatch(value):
            raise _bad(f"field {name} is not a lower-case hex digest")
    extra = obj.get("extra")
    if extra is not None:
        if type(extra) is not dict or not 0 < len(extra) <= MAX_EXTRA_KEYS:
            raise _bad(f"extra is not a non-empty object of at most {MAX_EXTRA_KEYS} keys")
        for key, value in extra.items():
            if not _valid_name("extra", key, _is_extra_key):
                raise _bad(f"extra key {key!r} is not valid")
            kind = type(value)
            if kind is str:
                if len(value) > MAX_EXTRA_VALUE_CHARS:
                    raise _bad(f"extra[{key!r}] is too long")
            elif kind is int:
                if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
                    raise _bad(f"extra[{key!r}] is outside ±(2**53-1)")
            elif value is not None and kind is not bool:
                raise _bad(f"extra[{key!r}] is not a scalar")
        parties = extra.get(PARTIES_KEY)
        if parties is not None:
            if type(parties) is not str or not _valid_name("parties", parties, _is_parties):
                raise _bad("parties are not in canonical form (sorted, unique, comma-separated)")
    return time_us


def decode_body(obj: dict[str, Any], leaf: bytes, signature: bytes) -> Entry:
    """Build an :class:`Entry` from a parsed body object, checking every field."""
    time_us = check_body(obj)
    fields = {name: obj[name] for name in obj.keys() & _OPTIONAL_SET}
    return Entry(index=obj["index"], event=obj["event"], time=time_us, node=obj["node"],
                 prev_hash=bytes.fromhex(obj["prev"]), entry_hash=leaf,
                 signature=bytes(signature),
                 extra=MappingProxyType(dict(obj.get("extra") or {})), **fields)
