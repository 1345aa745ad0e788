"""optuna-dashboard over a study database, and the notes hpsearch writes for it.

    hpsearch dashboard --storage sqlite:///hpsearch.db      # http://127.0.0.1:8080

Each study gets a Markdown note (its study file, its search space and its best config so
far), refreshed at the end of every launch. Trials carry their config, device and training
seconds as user attributes, and their per-epoch reports make the learning curves.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .errors import HpsearchError
from .space import describe
from .storage import open_storage
from .study import best_trial, counts

if TYPE_CHECKING:
    from .study import OpenStudy

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def study_note(opened: "OpenStudy") -> str:
    """The Markdown the dashboard shows on the study's page."""
    spec, study = opened.spec, opened.study
    state = counts(study)
    best = best_trial(study)
    lines = [
        f"# {spec.study.name}",
        "",
        f"Validation **{spec.metric}**, {spec.direction}d. Model `{spec.model.name}` on data "
        f"`{spec.data.name}`, {spec.train.epochs} epochs.",
        "",
        "Trials: " + ", ".join(f"{n} {state_name.lower()}" for state_name, n in sorted(state.items())) + ".",
        "",
        "## Best config so far",
        "",
    ]
    if best is None:
        lines.append("No trial has completed yet.")
    else:
        config = best.user_attrs.get("config")
        lines += [f"Trial {best.number}: {spec.metric} = {best.value:.6g}", "", "```json", json.dumps(config, indent=2), "```"]
    lines += ["", "## Search space", "", "| key | values | applies to |", "|---|---|---|"]
    lines += [f"| {key} | {values} | {users} |" for key, values, users in describe(spec)]
    overrides = f" (launched with {opened.overrides})" if opened.overrides else ""
    lines += ["", f"## Study file `{opened.file.path}`{overrides}", "", "```toml", opened.file.text.rstrip(), "```", ""]
    return "\n".join(lines)


def write_study_note(opened: "OpenStudy") -> None:
    from optuna_dashboard import save_note

    save_note(opened.study, study_note(opened))


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
