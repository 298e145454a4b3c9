"""A rich progress bar that callers can switch off (tests, --quiet)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(
    description: str, total: int, enabled: bool = True, *, completed: int = 0, rate: bool = False, info: bool = False
) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n=1, completed=None, **fields)``; shows a bar with count, elapsed time and ETA when enabled.

    ``completed``: where the bar starts (a resumed job). ``advance(completed=k)`` sets the count instead
    of adding n. ``rate``: a "<rate> it/s" column after the count, ``info``: free text after the ETA;
    the caller sets both as fields (``advance(rate="12.5", info="loss 0.1")``), shown as "-" and "" until then.
    """
    if not enabled:
        yield lambda n=1, completed=None, **_: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn()]
    if rate:
        columns.append(TextColumn("{task.fields[rate]} it/s"))
    columns += [TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    if info:
        columns.append(TextColumn("{task.fields[info]}"))
    with Progress(*columns, transient=False) as prog:
        task = prog.add_task(description, total=total, completed=completed, rate="-", info="")

        def advance(n: int = 1, completed: int | None = None, **fields) -> None:
            prog.update(task, advance=None if completed is not None else n, completed=completed, **fields)

        yield advance
