"""Agreeing on one job transcript hash across all parties.

Every Channel hashes each direction of its link (``LinkDigest``). At the end of
a job each party sends every peer its view of its own links; the union covers
every directed link twice (once by each endpoint), and the two views must match.
The job transcript is SHA-256 over the job id and the sorted link records, so
every party that completes the exchange holds the same value. The parties then
send each other the final hash and compare it.

This exchange runs on reserved ``__`` tags, which are not themselves hashed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pcnode.errors import ProtocolError, TranscriptMismatch

from . import codec
from .channel import Channel

DOMAIN = b"pcnode/transcript/v1\x00"
_TAG_LINKS = "__transcript/links"
_TAG_FINAL = "__transcript/final"


def link_records(local: str, channels: Mapping[str, Channel]) -> list[dict[str, Any]]:
    """This party's view of each directed link it is on."""
    out = []
    for peer, ch in sorted(channels.items()):
        out.append({"src": local, "dst": peer, "messages": ch.sent.messages,
                    "bytes": ch.sent.nbytes, "digest": ch.sent.hexdigest()})
        out.append({"src": peer, "dst": local, "messages": ch.received.messages,
                    "bytes": ch.received.nbytes, "digest": ch.received.hexdigest()})
    return out


def merge_records(job_id: str, reports: Mapping[str, list[dict[str, Any]]]) -> str:
    """Merge every party's link records; raise TranscriptMismatch if two views differ."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for reporter, records in sorted(reports.items()):
        if not isinstance(records, list):
            raise ProtocolError(f"{reporter} sent a malformed transcript report")
        for rec in records:
            try:
                key = (str(rec["src"]), str(rec["dst"]))
                norm = {"src": key[0], "dst": key[1], "messages": int(rec["messages"]),
                        "bytes": int(rec["bytes"]), "digest": str(rec["digest"])}
            except (KeyError, TypeError, ValueError):
                raise ProtocolError(f"{reporter} sent a malformed transcript record") from None
            if key in merged and merged[key] != norm:
                raise TranscriptMismatch(
                    f"parties disagree on link {key[0]}->{key[1]}",
                    hint="a message was altered, lost or injected; see the job's ledger entries",
                    link=f"{key[0]}->{key[1]}",
                    expected=merged[key]["digest"], actual=norm["digest"],
                    expected_messages=merged[key]["messages"], actual_messages=norm["messages"],
                )
            merged[key] = norm
    body = codec.dumps([merged[k] for k in sorted(merged)])
    return hashlib.sha256(DOMAIN + job_id.encode() + b"\x00" + body).hexdigest()


def finalize(job_id: str, local: str, channels: Mapping[str, Channel]) -> str:
    """Run the end-of-job exchange with every peer and return the agreed transcript hash."""
    mine = link_records(local, channels)
    for ch in channels.values():
        ch.send(_TAG_LINKS, codec.dumps(mine))
    reports: dict[str, Any] = {local: mine}
    for peer, ch in channels.items():
        reports[peer] = codec.loads(ch.recv_bytes(_TAG_LINKS))
    digest = merge_records(job_id, reports)
    for ch in channels.values():
        ch.send(_TAG_FINAL, digest.encode())
    for peer, ch in channels.items():
        theirs = ch.recv_bytes(_TAG_FINAL).decode(errors="replace")
        if theirs != digest:
            raise TranscriptMismatch(
                f"{peer} computed a different transcript hash",
                peer=peer, expected=digest, actual=theirs,
            )
    return digest
