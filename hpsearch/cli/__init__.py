"""The `hpsearch` command: a few lines over the library per command.

Errors a user can cause print one line (`Error: ...`) on stderr and exit non-zero; there is
no traceback for them. Heavy libraries load inside the commands that need them, so
`hpsearch --help` and `hpsearch db ...` stay quick.
"""

from . import database, looking, managing, reusing, running  # noqa: F401  (each adds its commands)
from .group import cli, main

__all__ = ["cli", "main"]
