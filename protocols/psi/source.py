"""The input abstraction of PSI: a list of items, or a re-openable stream of chunks.

A 10M-row CSV should not be loaded into a Python list (that alone is ~1 GB),
so :class:`ItemSource` reads rows chunk by chunk. It can be built from:

* a sequence (``list``/``tuple``) of ``str`` or ``bytes``: :meth:`ItemSource.of`;
* a *factory*, a zero-argument callable returning a fresh iterable of chunks
  (each chunk a sequence of items), e.g. a function that opens the CSV and
  yields batches: :meth:`ItemSource.from_chunks`. The source is read once to
  hash and blind, and read again only if this party must output intersecting
  items, to fetch those rows;
* any other iterable of items (a generator): :meth:`ItemSource.from_iterable`.
  It can be read only once, so the items are kept in memory if the party must
  output them later; prefer a factory for large inputs.

Rows are numbered from 0 in input order across chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

import numpy as np

from pcnode.errors import InvalidInput

Item = str | bytes


def _rebatch(chunks: Iterable[Sequence[Item]], size: int) -> Iterator[list[Item]]:
    """Re-cut a stream of chunks into lists of exactly ``size`` (the last may be shorter)."""
    buf: list[Item] = []
    for chunk in chunks:
        if isinstance(chunk, (str, bytes)):
            raise InvalidInput(
                "a chunk source yielded a single item where a chunk was expected",
                hint="yield lists of items, or use ItemSource.from_iterable for a flat stream",
            )
        pos, n = 0, len(chunk)
        if buf:
            take = min(size - len(buf), n)
            buf.extend(chunk[:take])
            pos = take
            if len(buf) < size:
                continue
            yield buf
            buf = []
        while n - pos >= size:
            yield list(chunk[pos : pos + size])
            pos += size
        buf = list(chunk[pos:])
    if buf:
        yield buf


class ItemSource:
    """Items to intersect, read in chunks; see the module docstring for the three forms."""

    def __init__(
        self,
        factory: Callable[[], Iterable[Sequence[Item]]],
        *,
        total: int | None = None,
        items: Sequence[Item] | None = None,
        one_shot: bool = False,
    ) -> None:
        self._factory = factory
        self.total = total
        self._items = items
        self._one_shot = one_shot
        self._used = False
        self._retained: list[Item] | None = None

    # -- constructors ------------------------------------------------------------

    @classmethod
    def of(cls, items: Sequence[Item]) -> ItemSource:
        """A source over an in-memory sequence."""
        return cls(lambda: [items], total=len(items), items=items)

    @classmethod
    def from_chunks(
        cls, factory: Callable[[], Iterable[Sequence[Item]]], total: int | None = None
    ) -> ItemSource:
        """A source that calls ``factory()`` for a fresh iterable of chunks on each read."""
        if not callable(factory):
            raise InvalidInput("ItemSource.from_chunks needs a callable returning chunks")
        return cls(factory, total=total)

    @classmethod
    def from_iterable(cls, iterable: Iterable[Item]) -> ItemSource:
        """A one-shot source over a flat iterable of items (e.g. a generator)."""
        it = iter(iterable)

        def chunks() -> Iterator[list[Item]]:
            while batch := list(islice(it, 1 << 16)):
                yield batch

        return cls(chunks, one_shot=True)

    # -- reading ---------------------------------------------------------------------

    def chunks(self, size: int, *, retain: bool = False) -> Iterator[list[Item]]:
        """Yield the items in chunks of ``size``.

        ``retain`` keeps a one-shot source's items for a later :meth:`take`; a
        list or factory source never needs to.
        """
        if self._one_shot:
            if self._used:
                raise InvalidInput("this item source was already read", hint="pass a factory")
            self._used = True
            if retain:
                self._retained = []
        for batch in _rebatch(self._factory(), size):
            if self._retained is not None and self._one_shot:
                self._retained.extend(batch)
            yield batch

    def take(self, rows: np.ndarray) -> list[Item]:
        """The items at the given row numbers (ascending), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and np.any(np.diff(rows) < 0):
            raise InvalidInput("ItemSource.take needs ascending row numbers")
        base = self._items if self._items is not None else self._retained
        if base is not None:
            return [base[i] for i in rows.tolist()]
        if self._one_shot:
            raise InvalidInput("a one-shot source was not retained", hint="pass a factory")
        out: list[Item] = []
        wanted = rows.tolist()
        k, start = 0, 0
        for batch in _rebatch(self._factory(), 1 << 16):
            end = start + len(batch)
            while k < len(wanted) and wanted[k] < end:
                out.append(batch[wanted[k] - start])
                k += 1
            start = end
            if k == len(wanted):
                break
        if k != len(wanted):
            raise InvalidInput("the item source yielded fewer rows on the second read")
        return out


def as_source(items: Any) -> ItemSource:
    """Accept an :class:`ItemSource`, a sequence, a chunk factory or an iterable of items."""
    if isinstance(items, ItemSource):
        return items
    if isinstance(items, (str, bytes)):
        raise InvalidInput("PSI items must be a collection of keys, not a single string")
    if isinstance(items, Sequence):
        return ItemSource.of(items)
    if callable(items):
        return ItemSource.from_chunks(items)
    if isinstance(items, Iterable):
        return ItemSource.from_iterable(items)
    raise InvalidInput(f"cannot read PSI items from a {type(items).__name__}")


__all__ = ["Item", "ItemSource", "as_source"]
