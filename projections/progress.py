"""A rich progress bar for long folds: events done, events/s, elapsed and ETA, on stderr."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class ProgressBar:
    """A rich progress bar on stderr (events, events/s, ETA), or nothing when disabled."""

    def __init__(self, enabled: bool, description: str, total: int,
                 unit: str = "events") -> None:
        self._p: Progress | None = None
        if enabled and total > 0:
            self._p = Progress(TextColumn("{task.description}"), BarColumn(),
                               MofNCompleteColumn(), _RateColumn(unit), TimeElapsedColumn(),
                               TimeRemainingColumn(), console=Console(stderr=True),
                               transient=False)
            self._p.start()
            self._task = self._p.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self._p is not None:
            self._p.advance(self._task, n)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} {self.unit}/s")
