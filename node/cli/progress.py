"""A rich progress display fed by job ``progress(stage, done, total)`` callbacks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from node.cli.output import err_console
from node.jobs.kinds import Progress as ProgressFn


@contextmanager
def job_progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """Yield a progress callback that renders one bar per stage on stderr."""
    if not enabled:
        yield lambda stage, done, total: None
        return
    lock = threading.Lock()
    tasks: dict[str, int] = {}
    with Progress(TextColumn("{task.description:>12}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=False) as bar:

        def update(stage: str, done: int, total: int | None) -> None:
            with lock:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

        yield update
