"""A rich progress bar that callers can switch off (tests, --quiet)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, **fields)``; shows a bar with count, elapsed time and ETA when enabled."""
    if not enabled:
        yield lambda n=1, **_: None
        return
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, transient=False) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1, **fields: prog.update(task, advance=n, **fields)
