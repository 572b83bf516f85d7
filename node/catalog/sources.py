"""Where a dataset's rows live: a CSV file, a Parquet file, or a SQLite/PostgreSQL table.

Data stays where it is. The catalog stores a reference (path or URL and
table), the schema, a content digest and a cheap fingerprint. Every source is
read in bounded-memory batches of text columns (:meth:`Source.batches`), so a
10-million-row CSV is never held in memory at once.

Digests:

* files: SHA-256 of the bytes. The fingerprint is (size, mtime); when it is
  unchanged the file is taken as unchanged, otherwise the digest is recomputed
  and compared, so touching a file without changing it does not make it stale;
* SQL tables: SHA-256 over the rows in a canonical order (ORDER BY every
  column), each row as its JSON text. There is no cheap fingerprint for a
  table, so a staleness check re-reads the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from node.catalog.coltypes import infer_type
from pcnode.errors import InvalidInput

#: Rows per batch when streaming a source.
DEFAULT_CHUNK_ROWS = 65_536
_HASH_BLOCK = 1 << 20
_CSV_BLOCK = 1 << 22


class Source(ABC):
    """A readable dataset source."""

    kind: str = ""

    @property
    @abstractmethod
    def location(self) -> str:
        """The stored reference: absolute path, or database URL."""

    @property
    def table(self) -> str | None:
        """The table name, for SQL sources."""
        return None

    @property
    def format(self) -> str:
        """The resource format (信息资源格式) shown in the catalog."""
        return self.kind.upper()

    def display(self) -> str:
        """The reference as shown to users (SQL passwords masked)."""
        return self.location

    @abstractmethod
    def schema(self) -> list[tuple[str, str]]:
        """(column name, inferred declared type) for every column, in order."""

    @abstractmethod
    def batches(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS
                ) -> Iterator[pa.Table]:
        """Stream the named columns as tables of string columns, in a stable row order."""

    @abstractmethod
    def digest(self) -> str:
        """Content digest, ``sha256:<hex>``."""

    def fingerprint(self) -> dict[str, Any]:
        """A cheap change indicator; empty when the source has none."""
        return {}

    def changed(self, digest: str, fingerprint: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Whether the content differs from ``digest``; also the current fingerprint.

        Uses the fingerprint as a fast path where the source has one.
        """
        current = self.fingerprint()
        if current and current == fingerprint:
            return False, current
        return self.digest() != digest, current


class FileSource(Source):
    """Common parts of file sources."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()

    @property
    def location(self) -> str:
        """The absolute path of the file."""
        return str(self.path)

    def _stat(self) -> os.stat_result:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise InvalidInput(f"{self.path}: no such file") from None
        except OSError as error:
            raise InvalidInput(f"{self.path}: cannot read: {error.strerror}") from None
        if not self.path.is_file():
            raise InvalidInput(f"{self.path}: not a regular file")
        return st

    def fingerprint(self) -> dict[str, Any]:
        """File size and modification time in nanoseconds."""
        try:
            st = self.path.stat()
        except OSError:
            return {"missing": True}
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def digest(self) -> str:
        """SHA-256 of the file's bytes, read in 1 MiB blocks."""
        self._stat()
        h = hashlib.sha256()
        try:
            with self.path.open("rb") as fh:
                while block := fh.read(_HASH_BLOCK):
                    h.update(block)
        except OSError as error:
            raise InvalidInput(f"{self.path}: cannot read: {error.strerror}") from None
        return "sha256:" + h.hexdigest()

    def changed(self, digest: str, fingerprint: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """A vanished file counts as changed."""
        current = self.fingerprint()
        if current.get("missing"):
            return True, current
        return super().changed(digest, fingerprint)


class CsvSource(FileSource):
    """A UTF-8 CSV file with a header row, read with pyarrow's streaming reader."""

    kind = "csv"

    def _open(self, columns: Sequence[str] | None) -> pacsv.CSVStreamingReader:
        self._stat()
        convert = pacsv.ConvertOptions(strings_can_be_null=True)
        if columns is not None:
            convert = pacsv.ConvertOptions(
                column_types={c: pa.string() for c in columns},
                include_columns=list(columns),
                strings_can_be_null=True,
            )
        try:
            return pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
                convert_options=convert,
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as error:
            raise InvalidInput(
                f"{self.path}: not a readable CSV file: {sanitize(str(error))}",
                hint="expected UTF-8 CSV with a header row",
            ) from None
        except OSError as error:
            raise InvalidInput(f"{self.path}: cannot read: {sanitize(str(error))}") from None

    def schema(self) -> list[tuple[str, str]]:
        """Column names from the header; types inferred by pyarrow from the first block."""
        reader = self._open(None)
        return [(f.name, infer_type(f.type)) for f in reader.schema]

    def batches(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS
                ) -> Iterator[pa.Table]:
        """Stream ``columns`` as text, re-batched to ``chunk_rows`` rows."""
        reader = self._open(columns)
        yield from _rebatch(_guard(self.path, iter(reader)), list(columns), chunk_rows)


class ParquetSource(FileSource):
    """A Parquet file, read batch by batch."""

    kind = "parquet"

    def _file(self) -> pq.ParquetFile:
        self._stat()
        try:
            return pq.ParquetFile(self.path)
        except (pa.ArrowInvalid, OSError) as error:
            raise InvalidInput(f"{self.path}: not a readable Parquet file: "
                               f"{sanitize(str(error))}") from None

    def schema(self) -> list[tuple[str, str]]:
        """Column names and types from the Parquet schema."""
        return [(f.name, infer_type(f.type)) for f in self._file().schema_arrow]

    def batches(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS
                ) -> Iterator[pa.Table]:
        """Stream ``columns`` as text."""
        pf = self._file()
        it = pf.iter_batches(batch_size=chunk_rows, columns=list(columns))
        for batch in _guard(self.path, it):
            yield _to_text(pa.Table.from_batches([batch]), list(columns))


class SqlSource(Source):
    """A table in a SQLite or PostgreSQL database, reached through SQLAlchemy."""

    kind = "sql"

    def __init__(self, url: str, table: str) -> None:
        self.url = url
        self._table_name = table
        self._engine: Any = None
        self._table: Any = None

    @property
    def location(self) -> str:
        """The database URL."""
        return self.url

    @property
    def table(self) -> str | None:
        """The table name."""
        return self._table_name

    @property
    def format(self) -> str:
        """E.g. ``SQL table (sqlite)``."""
        return f"SQL table ({self.url.split(':', 1)[0].split('+', 1)[0]})"

    def display(self) -> str:
        """The URL with any password masked, and the table."""
        from sqlalchemy.engine import make_url

        try:
            shown = make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            shown = "<invalid url>"
        return f"{shown} table {self._table_name}"

    def _reflect(self) -> Any:
        if self._table is not None:
            return self._table
        import sqlalchemy as sa

        try:
            self._engine = sa.create_engine(self.url)
            self._table = sa.Table(self._table_name, sa.MetaData(), autoload_with=self._engine)
        except sa.exc.NoSuchTableError:
            raise InvalidInput(f"{self.display()}: no such table") from None
        except sa.exc.ArgumentError as error:
            raise InvalidInput(f"invalid database URL: {sanitize(str(error))}") from None
        except (sa.exc.OperationalError, sa.exc.DBAPIError) as error:
            raise InvalidInput(f"{self.display()}: cannot read: {sanitize(str(error.orig))}") from None
        except ImportError as error:
            raise InvalidInput(f"no database driver for {self.display()}: {error}") from None
        return self._table

    def schema(self) -> list[tuple[str, str]]:
        """Column names and types from the reflected table."""
        import sqlalchemy as sa

        out = []
        for col in self._reflect().columns:
            t = col.type
            if isinstance(t, sa.Boolean):
                name = "boolean"
            elif isinstance(t, sa.Integer):
                name = "integer"
            elif isinstance(t, (sa.Float, sa.Numeric)):
                name = "float"
            elif isinstance(t, (sa.Date, sa.DateTime)):
                name = "date"
            else:
                name = "string"
            out.append((col.name, name))
        return out

    def _select(self, columns: Sequence[str]) -> Any:
        import sqlalchemy as sa

        table = self._reflect()
        missing = [c for c in columns if c not in table.c]
        if missing:
            raise InvalidInput(f"{self.display()}: no column(s) {', '.join(missing)}")
        return sa.select(*[table.c[c] for c in columns]).order_by(*table.c)

    def _rows(self, columns: Sequence[str], chunk_rows: int) -> Iterator[list[Any]]:
        import sqlalchemy as sa

        stmt = self._select(columns)
        try:
            with self._engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
                for part in result.partitions(chunk_rows):
                    yield [tuple(r) for r in part]
        except (sa.exc.OperationalError, sa.exc.DBAPIError) as error:
            raise InvalidInput(f"{self.display()}: cannot read: {sanitize(str(error.orig))}") from None

    def batches(self, columns: Sequence[str], chunk_rows: int = DEFAULT_CHUNK_ROWS
                ) -> Iterator[pa.Table]:
        """Stream ``columns`` as text, ordered by every column of the table."""
        cols = list(columns)
        for rows in self._rows(cols, chunk_rows):
            arrays = [
                pa.array([None if r[i] is None else _text(r[i]) for r in rows], pa.string())
                for i in range(len(cols))
            ]
            yield pa.table(arrays, names=cols)

    def digest(self) -> str:
        """SHA-256 over all rows in canonical order (see module docstring)."""
        table = self._reflect()
        h = hashlib.sha256()
        h.update(json.dumps([c.name for c in table.columns]).encode())
        for rows in self._rows([c.name for c in table.columns], DEFAULT_CHUNK_ROWS):
            for r in rows:
                h.update(json.dumps([None if v is None else _text(v) for v in r],
                                    ensure_ascii=False).encode())
                h.update(b"\n")
        return "sha256:" + h.hexdigest()


def open_source(*, file: str | Path | None = None, sql: str | None = None,
                table: str | None = None, kind: str | None = None) -> Source:
    """Build a source from CLI-style arguments (exactly one of ``file`` or ``sql`` + ``table``).

    ``kind`` forces csv/parquet; otherwise it is taken from the file extension
    (``.parquet``/``.pq`` is Parquet, anything else CSV).
    """
    if (file is None) == (sql is None):
        raise InvalidInput("give exactly one source: --file PATH, or --sql URL with --table T")
    if sql is not None:
        if not table:
            raise InvalidInput("--sql needs --table T naming the table")
        return SqlSource(sql, table)
    if table:
        raise InvalidInput("--table applies only with --sql")
    path = Path(file)  # type: ignore[arg-type]
    if kind is None:
        kind = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    if kind == "parquet":
        return ParquetSource(path)
    if kind == "csv":
        return CsvSource(path)
    if kind == "sql":  # pragma: no cover - stored SQL sources go through sql=
        raise InvalidInput("a SQL source needs a URL and a table")
    raise InvalidInput(f"unknown source kind {kind!r}")


def stored_source(kind: str, location: str, table: str | None) -> Source:
    """Rebuild the source of a catalog entry."""
    if kind == "sql":
        return SqlSource(location, table or "")
    return open_source(file=location, kind=kind)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_ROW_TAIL = re.compile(r"^(.*?\bExpected \d+ columns?, got \d+)")


def sanitize(message: str) -> str:
    """Strip quoted values and row text from a reader's error (no raw data in messages)."""
    m = _ROW_TAIL.match(message)
    if m:
        return m.group(1)
    message = _QUOTED.sub("<value>", message)
    return message.splitlines()[0][:300] if message else message


def _guard(path: Path, it: Iterator[Any]) -> Iterator[Any]:
    """Turn reader errors in the middle of a file into InvalidInput naming the file."""
    try:
        yield from it
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError) as error:
        raise InvalidInput(
            f"{path}: malformed data: {sanitize(str(error))}",
            hint="fix the file (every row needs every column; UTF-8 text)",
        ) from None
    except OSError as error:
        raise InvalidInput(f"{path}: cannot read: {sanitize(str(error))}") from None


def _to_text(table: pa.Table, columns: list[str]) -> pa.Table:
    arrays = []
    for name in columns:
        col = table.column(name)
        if not pa.types.is_string(col.type):
            try:
                col = pc.cast(col, pa.string())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                col = pa.chunked_array(
                    [pa.array([None if v is None else str(v) for v in col.to_pylist()], pa.string())]
                )
        arrays.append(col)
    return pa.table(arrays, names=columns)


def _rebatch(batches: Iterator[pa.RecordBatch], columns: list[str], chunk_rows: int
             ) -> Iterator[pa.Table]:
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield _to_text(table.slice(0, chunk_rows), columns)
            rest = table.slice(chunk_rows)
            pending = rest.to_batches()
            count = rest.num_rows
    if count:
        yield _to_text(pa.Table.from_batches(pending), columns)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)
