"""The errors a user can cause and fix.

Every one carries a single line that says where (file and key, or a storage URL with its
password masked), which rule was broken, with which value, and what to do next. The CLI
prints that line and exits non-zero; it never shows a traceback for these.
"""


class HpsearchError(Exception):
    """An error the user can fix; its message is one self-contained line.

    `trace`, when the error was raised in the user's own code (a model's constructor, a data
    factory), is that code's part of the traceback, for `hpsearch check` to show.
    """

    exit_code = 1

    def __init__(self, message: str = "", *, trace: str | None = None):
        super().__init__(message)
        self.trace = trace


class SpecError(HpsearchError):
    """A study file (or a command-line override of one) breaks a rule."""


class ConfigError(HpsearchError):
    """A trial config or config bundle is malformed or outside a study's space."""


class DataError(HpsearchError):
    """A dataset is missing, unreadable, or does not fit the model."""


class ModelError(HpsearchError):
    """A model factory is missing or builds something unusable."""


class StorageError(HpsearchError):
    """A database is unreachable, behind its schema, or lacks what was asked for."""


class StudyNotFound(StorageError):
    """The named study is not in the storage."""
