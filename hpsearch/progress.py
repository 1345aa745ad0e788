"""One progress display for a whole launch, read from the database (all workers together).

On a terminal: a live bar with trials done / total, the best value so far and an ETA. In a
log (not a terminal): one line each time the count of finished trials or the best changes.
"""

from __future__ import annotations

import time
from typing import Any

import optuna
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .study import best_so_far, counts, finished


class LaunchProgress:
    def __init__(self, study: optuna.Study, total: int, metric: str, console: Console | None = None):
        self.study = study
        self.total = total
        self.metric = metric
        self.console = console or Console(stderr=True)
        self._live = self.console.is_terminal
        self._last: tuple[Any, ...] | None = None
        self._bar: Progress | None = None
        self._task: Any = None
        self._start_done = 0

    def __enter__(self) -> "LaunchProgress":
        state = counts(self.study)
        self._start_done = finished(state)
        if self._live:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(
                self.study.study_name, total=self.total, completed=self._start_done, status=""
            )
        return self

    def refresh(self) -> None:
        state = counts(self.study)
        done = min(finished(state), self.total)
        best = best_so_far(self.study)
        best_text = f"best {self.metric}={best[1]:.4f} (trial {best[0]})" if best else "no result yet"
        extra = [f"{state[k]} {k.lower()}" for k in ("RUNNING", "FAIL") if state.get(k)]
        status = best_text + (f", {', '.join(extra)}" if extra else "")
        if self._bar is not None:
            self._bar.update(self._task, completed=done, status=status)
            return
        key = (done, best)
        if key != self._last:
            self._last = key
            stamp = time.strftime("%H:%M:%S")
            self.console.print(f"{stamp} [{done}/{self.total}] {status}", highlight=False)

    def __exit__(self, *exc: Any) -> None:
        try:
            self.refresh()
        finally:
            if self._bar is not None:
                self._bar.stop()
