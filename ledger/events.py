"""Event names the node writes, and the conventions for joint jobs.

The ledger accepts any event name matching :data:`EVENT_PATTERN`; these are
the ones pcnode itself writes and that replay understands. See docs/LEDGER.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from pcnode.errors import InvalidInput

JOB_REQUESTED = "job.requested"
JOB_ALLOWED = "job.allowed"
JOB_DENIED = "job.denied"
JOB_STARTED = "job.started"
JOB_COMPLETED = "job.completed"
JOB_FAILED = "job.failed"
JOB_EPOCH = "job.epoch"
RECEIPT_RECEIVED = "receipt.received"
CHECKPOINT = "checkpoint"
DATASET_REGISTERED = "dataset.registered"
DATASET_CHANGED = "dataset.changed"
DATASET_RETIRED = "dataset.retired"
APPLICATION_FILED = "application.filed"
APPLICATION_APPROVED = "application.approved"
APPLICATION_REFUSED = "application.refused"
GRANT_CREATED = "grant.created"
GRANT_REVOKED = "grant.revoked"
BUDGET_SPENT = "budget.spent"

#: Every event name pcnode writes.
KNOWN_EVENTS: frozenset[str] = frozenset({
    JOB_REQUESTED, JOB_ALLOWED, JOB_DENIED, JOB_STARTED, JOB_COMPLETED, JOB_FAILED,
    JOB_EPOCH, RECEIPT_RECEIVED, CHECKPOINT, DATASET_REGISTERED, DATASET_CHANGED,
    DATASET_RETIRED, APPLICATION_FILED, APPLICATION_APPROVED, APPLICATION_REFUSED,
    GRANT_CREATED, GRANT_REVOKED, BUDGET_SPENT,
})

#: Events that end a job at one party.
JOB_TERMINAL_EVENTS: frozenset[str] = frozenset({JOB_COMPLETED, JOB_FAILED, JOB_DENIED})

#: Events written by the ledger itself; ``Ledger.append`` refuses them so that
#: a checkpoint or receipt entry always comes with its signed object.
RESERVED_EVENTS: frozenset[str] = frozenset({CHECKPOINT, RECEIPT_RECEIVED})

#: Lower-case dotted words, e.g. ``job.completed``; at most 64 characters.
EVENT_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
MAX_EVENT_CHARS = 64

#: Node (party) names: letters, digits, ``_ . -``; no commas, so a party list
#: can be written comma-separated. At most 128 characters.
NODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")

#: Key in ``extra`` naming every party of a joint job.
PARTIES_KEY = "parties"
#: Key in ``extra`` of a ``receipt.received`` entry holding the receipt JSON.
RECEIPT_KEY = "receipt"


def check_event(event: str) -> str:
    """Return ``event`` if it is a valid event name, else raise InvalidInput."""
    if not isinstance(event, str) or len(event) > MAX_EVENT_CHARS \
            or not EVENT_PATTERN.fullmatch(event):
        raise InvalidInput(f"event name {event!r} is not valid",
                           hint="use lower-case dotted words such as 'job.completed'")
    return event


def check_node(name: str, what: str = "node name") -> str:
    """Return ``name`` if it is a valid node name, else raise InvalidInput."""
    if not isinstance(name, str) or not NODE_PATTERN.fullmatch(name):
        raise InvalidInput(f"{what} {name!r} is not valid",
                           hint="use letters, digits, '_', '.', '-' (max 128, no commas)")
    return name


def format_parties(names: Iterable[str]) -> str:
    """The canonical ``extra['parties']`` value: sorted, unique, comma-separated."""
    out = sorted({check_node(n, "party name") for n in names})
    if not out:
        raise InvalidInput("a joint job needs at least one party")
    return ",".join(out)


def parse_parties(value: object) -> list[str]:
    """Read ``extra['parties']``: a comma-separated string or a JSON list string."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        names = [str(v) for v in value]
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                loaded = json.loads(text)
            except ValueError:
                raise InvalidInput("parties is not a valid JSON list") from None
            if not isinstance(loaded, list):
                raise InvalidInput("parties is not a JSON list")
            names = [str(v) for v in loaded]
        else:
            names = [p.strip() for p in text.split(",") if p.strip()]
    else:
        raise InvalidInput("parties must be a comma-separated string or a list of names")
    return sorted({check_node(n, "party name") for n in names})
