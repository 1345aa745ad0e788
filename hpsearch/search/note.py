"""The study's note in optuna-dashboard: its study file, search space and best config so far.

Refreshed at the end of every launch, so the dashboard's study page says what the study is
without opening a file.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ..config.space import describe
from .budget import best_trial, counts

if TYPE_CHECKING:
    from .study import OpenStudy


def study_note(opened: "OpenStudy") -> str:
    """The Markdown the dashboard shows on the study's page."""
    spec, study = opened.spec, opened.study
    state = counts(study)
    best = best_trial(study)
    lines = [
        f"# {spec.study.name}",
        "",
        f"Validation **{spec.metric}**, {spec.direction}d. Trains {spec.trains}, {spec.train.epochs} epochs.",
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
    from optuna_dashboard import save_note  # here: `hpsearch --help` must not load the dashboard

    save_note(opened.study, study_note(opened))
