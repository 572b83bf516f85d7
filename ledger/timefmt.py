"""Ledger time: integer microseconds since the Unix epoch, UTC.

Entries keep time as an ``int`` of microseconds (exact, cheap to compare and
to filter on). The canonical encoding writes it as RFC 3339 in one fixed form,
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (always UTC, always six fractional digits), so
the same instant has exactly one spelling.
"""

from __future__ import annotations

import re
import time as _time
from datetime import UTC, datetime, timedelta

from pcnode.errors import InvalidInput

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Latest instant accepted: the end of year 9999, the last year RFC 3339 can write.
MAX_TIME_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) \
    // timedelta(microseconds=1)  # integer division: ``/`` rounds this up to year 10000

_ONE_US = timedelta(microseconds=1)
_CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def now_us() -> int:
    """The current time in microseconds since the epoch (UTC)."""
    return _time.time_ns() // 1000


#: (second, "YYYY-MM-DDTHH:MM:SS") of the last second formatted: the append path
#: formats the clock on every entry, and consecutive entries share their second.
_last_second: tuple[int, str] = (-1, "")


def format_time(us: int) -> str:
    """Write ``us`` (microseconds since the epoch) in the canonical RFC 3339 form."""
    global _last_second
    if isinstance(us, bool) or not isinstance(us, int) or not 0 <= us <= MAX_TIME_US:
        raise InvalidInput(f"time {us!r} is not an instant between 1970 and 9999",
                           hint="pass microseconds since the Unix epoch as an int")
    second, micro = divmod(us, 1_000_000)
    cached = _last_second  # one read: another thread may replace it meanwhile
    if cached[0] == second:
        prefix = cached[1]
    else:
        # isoformat ends in "+00:00"; the date and time part is fixed-width from 1970 on
        prefix = (_EPOCH + timedelta(seconds=second)).isoformat(timespec="seconds")[:-6]
        _last_second = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


def parse_canonical_time(text: str) -> int:
    """Read a time written by :func:`format_time`; anything else is rejected."""
    if not isinstance(text, str) or not _CANONICAL.fullmatch(text):
        raise InvalidInput(f"time {text!r} is not in the canonical form",
                           hint="expected YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        us = (datetime.fromisoformat(text) - _EPOCH) // _ONE_US
    except ValueError:
        raise InvalidInput(f"time {text!r} is not a valid date") from None
    if us < 0:
        raise InvalidInput(f"time {text!r} is before 1970")
    return us


def to_us(value: int | str | datetime) -> int:
    """Accept an instant as microseconds, an RFC 3339 string or an aware datetime."""
    if isinstance(value, bool):
        raise InvalidInput("time must be an instant, not a boolean")
    if isinstance(value, int):
        format_time(value)  # range check
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput(f"time {value!r} is not RFC 3339",
                               hint="e.g. 2024-05-01T08:00:00.000000Z") from None
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidInput("time has no time zone",
                               hint="give an offset or Z; the ledger stores UTC")
        us = (value - _EPOCH) // timedelta(microseconds=1)
        format_time(us)
        return us
    raise InvalidInput(f"time of type {type(value).__name__} is not supported",
                       hint="pass int microseconds, an RFC 3339 string or an aware datetime")
