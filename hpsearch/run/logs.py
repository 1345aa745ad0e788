"""Workers' log files, and a full disk under them.

A log is worth less than a trial: when the disk under `--log-dir` fills during a launch, the
trials go on and their results still reach the database; only the log stops. A disk that is
already full when a launch starts is an error before anything is written, as any log folder
the launcher cannot write in.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..errors import HpsearchError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_folder(root: str, study: str) -> Path:
    """The study's log folder, made and known writable (with room for a line) before any worker starts."""
    folder = Path(root) / study
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".hpsearch-write-test"
        try:
            # Some bytes, not an empty file: a full disk still has room for a name.
            with open(probe, "wb") as out:
                out.write(b"hpsearch checks that its logs can be written here\n")
        finally:
            probe.unlink(missing_ok=True)
    except OSError as e:
        raise HpsearchError(
            f"--log-dir {root}: cannot write logs in {folder} ({e.strerror}); free some space or pass a writable --log-dir"
        ) from None
    return folder


class LogFile(logging.FileHandler):
    """A log file that stops, with one notice on the console, when it cannot be written
    (a full disk), instead of printing a traceback for every record and failing at close."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.setFormatter(logging.Formatter(FORMAT))
        self.lost = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.lost:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self.lost = True
        try:
            sys.stderr.write(f"hpsearch: cannot write the log {self.baseFilename} ({error.strerror}); the launch goes on without it\n")
        except OSError:
            pass
        self._close_quietly()

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # what was left in its buffer has nowhere to go
            self._close_quietly()

    def _close_quietly(self) -> None:
        stream, self.stream = self.stream, None  # type: ignore[assignment]
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class _Unfailing:
    """A text stream whose writes and flushes never raise OSError (what could not be written is lost)."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def survive_a_full_log() -> None:
    """In a worker process: a full disk under its output (its log file) loses log lines, not
    trials. Without this the first `print` or closing message after the disk fills raises,
    and the worker exits with an error after its trials are done."""
    if not isinstance(sys.stdout, _Unfailing) and sys.stdout is not None:
        sys.stdout = _Unfailing(sys.stdout)  # type: ignore[assignment]
    if not isinstance(sys.stderr, _Unfailing) and sys.stderr is not None:
        sys.stderr = _Unfailing(sys.stderr)  # type: ignore[assignment]
