"""One progress display for a whole launch, read from the database (all workers together).

On a terminal: a live bar with trials done / total, the best value so far and an ETA. In a
log (not a terminal): one line each time the count of finished trials or the best changes.
In a Jupyter notebook (`hpsearch.launch`): tqdm's notebook bar (`NotebookProgress`), which
redraws in place in the cell instead of printing a line per change.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import optuna
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..db.faults import retrying
from ..search.budget import best_so_far, counts, finished

if TYPE_CHECKING:
    from ..search.study import OpenStudy

log = logging.getLogger("hpsearch.launch")


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
        # A database fault (a killed connection, a locked file) delays the display, never ends it.
        state, best = retrying(lambda: (counts(self.study), best_so_far(self.study)), "showing progress")
        done = min(finished(state), self.total)
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


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (where a terminal's live display cannot redraw)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class NotebookProgress(LaunchProgress):
    """The same display as a tqdm bar: a widget in a notebook, a text bar elsewhere."""

    def __init__(self, study: optuna.Study, total: int, metric: str, file: Any = None):
        super().__init__(study, total, metric)
        self.file = file

    def __enter__(self) -> "NotebookProgress":
        from tqdm.auto import tqdm

        self._start_done = finished(counts(self.study))
        self._tqdm = tqdm(total=self.total, initial=min(self._start_done, self.total), desc=self.study.study_name, file=self.file, unit="trial")
        return self

    def refresh(self) -> None:
        # A database fault (a killed connection, a locked file) delays the display, never ends it.
        state, best = retrying(lambda: (counts(self.study), best_so_far(self.study)), "showing progress")
        done = min(finished(state), self.total)
        self._tqdm.set_postfix_str(f"best {self.metric}={best[1]:.4f} (trial {best[0]})" if best else "no result yet", refresh=False)
        self._tqdm.update(done - self._tqdm.n)

    def __exit__(self, *exc: Any) -> None:
        try:
            self.refresh()
        finally:
            self._tqdm.close()


class watching:
    """The progress display, refreshed from a thread while the workers run; `enabled` is
    True (the terminal's display), False, or a display class such as NotebookProgress."""

    def __init__(self, opened: "OpenStudy", enabled: Any):
        self.opened = opened
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = 0.0

    def __enter__(self) -> "watching":
        if not self.enabled:
            return self
        spec = self.opened.spec
        display = self.enabled if isinstance(self.enabled, type) else LaunchProgress
        self.progress = display(self.opened.study, spec.search.n_trials, spec.metric).__enter__()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.progress.refresh()
            except Exception as e:  # a busy database delays the display, never the search
                log.debug("progress refresh failed: %s", e)

    def __exit__(self, *exc: Any) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self.progress.__exit__(*exc)
