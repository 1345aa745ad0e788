"""Resolve a user's `package.module:factory` name to the callable it names."""

from __future__ import annotations

import importlib
import os
import sys
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
