"""optuna-dashboard over a study database.

    hpsearch dashboard --storage sqlite:///hpsearch.db      # http://127.0.0.1:8080

Each study has a Markdown note (`search/note.py`: its study file, search space and best
config), refreshed at the end of every launch. Trials carry their config, device and
training seconds as user attributes, and their per-epoch reports make the learning curves.
"""

from __future__ import annotations

from ..db.storage import open_storage
from ..errors import HpsearchError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def serve(storage: str, host: str, port: int) -> None:
    """Serve optuna-dashboard until interrupted (blocking)."""
    from optuna_dashboard import run_server

    st = open_storage(storage)
    try:
        run_server(st, host=host, port=port)
    except OSError as e:
        raise HpsearchError(f"dashboard: cannot listen on {host}:{port}: {e.strerror or e}; pick another --port") from None


def exposed_warning(host: str) -> str | None:
    if host in LOCAL_HOSTS:
        return None
    return (
        f"warning: the dashboard on {host} can be reached by anyone on that network and has no "
        "login; use --host 127.0.0.1 (and an SSH tunnel) unless that is what you want"
    )
