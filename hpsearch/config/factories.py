"""Resolve a user's `package.module:factory` name to the callable it names."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any, Callable

from ..errors import HpsearchError


def load_factory(name: str, where: str, error: type[HpsearchError]) -> Callable[..., Any]:
    """Import `package.module:attr`; `where` names the study-file key in errors.

    The working directory is importable, as with `python -m`, so a study can name a module
    of the project it is launched from.
    """
    module_name, _, attr = name.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise error(
            f"{where}: cannot import module {module_name!r} for {name!r}: {e}; "
            "check the name and that the module is importable from the working directory"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise error(f"{where}: module {module_name!r} has no callable {attr!r}, got {name!r}")
    return factory


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_frames(error: BaseException) -> list[traceback.FrameSummary]:
    """The frames of `error`'s traceback that are the user's code (not hpsearch's, not
    Python's importlib), outermost first."""
    frames = traceback.extract_tb(error.__traceback__)
    return [f for f in frames if not os.path.abspath(f.filename).startswith(_PACKAGE + os.sep) and "importlib" not in f.filename]


def raised_in_user_code(error: BaseException, what: str) -> str:
    """One line: `what` raised TypeError: ... (at models.py:12 in __init__)."""
    frames = user_frames(error)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{what} raised {type(error).__name__}: {error}{where}"


def user_traceback(error: BaseException) -> str:
    """The user's part of `error`'s traceback, as Python prints it."""
    lines = traceback.format_list(user_frames(error))
    return "Traceback (most recent call last, your code only):\n" + "".join(lines) + "".join(
        traceback.format_exception_only(type(error), error)
    )
