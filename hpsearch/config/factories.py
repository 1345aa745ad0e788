"""Resolve a user's `package.module:factory` name to the callable it names."""

from __future__ import annotations

import importlib
import os
import re
import sys
import sysconfig
import traceback
from typing import Any, Callable

from ..errors import HpsearchError

FACTORY_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def check_name(name: str, known: tuple[str, ...], what: str) -> str:
    """`name` if it is one of `known` or a `package.module:attribute`; else a ValueError."""
    if name in known or FACTORY_PATTERN.match(name):
        return name
    raise ValueError(
        f"unknown {what} {name!r}; use one of {', '.join(known)} or 'package.module:factory'"
    )


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
        raise error(f"{where}: module {module_name!r} has no callable {attr!r}, got {name!r}; check the name after the colon")
    return factory


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_frames(error: BaseException) -> list[traceback.FrameSummary]:
    """The frames of `error`'s traceback that are the user's code (not hpsearch's, not
    Python's importlib), outermost first."""
    frames = traceback.extract_tb(error.__traceback__)
    return [f for f in frames if not os.path.abspath(f.filename).startswith(_PACKAGE + os.sep) and "importlib" not in f.filename]


_LIBRARIES = tuple({os.path.abspath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "purelib", "platlib")})


def raised_in_user_code(error: BaseException, what: str) -> str:
    """One line: `what` raised TypeError: ... (at models.py:12 in __init__), naming the
    innermost line of the user's own code (not torch's, which the traceback still shows)."""
    frames = user_frames(error)
    own = [f for f in frames if not os.path.abspath(f.filename).startswith(_LIBRARIES)] or frames
    where = f" (at {os.path.basename(own[-1].filename)}:{own[-1].lineno} in {own[-1].name})" if own else ""
    if isinstance(error, SystemExit):  # would end the launcher with the user's exit code and no word
        return f"{what} called sys.exit({error.code!r}){where}; it must return (or raise an exception), not exit the process"
    return f"{what} raised {type(error).__name__}: {error}{where}"


def user_traceback(error: BaseException) -> str:
    """The user's part of `error`'s traceback, as Python prints it."""
    lines = traceback.format_list(user_frames(error))
    return "Traceback (most recent call last, your code only):\n" + "".join(lines) + "".join(
        traceback.format_exception_only(type(error), error)
    )
