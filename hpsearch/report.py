"""What a study found: a table per optimizer, parameter importances, and an HTML page.

    hpsearch report quickstart -o report.html

The page is self-contained (plotly.js is inlined once): the optimization history, the value
against the learning rate for each optimizer, the learning curves of the best trials, the
parameter importances, and, for a comparison (`hpsearch compare`), its ranking.
"""

from __future__ import annotations

import html
import json
import statistics
from dataclasses import dataclass, field
from typing import Any

import optuna

from .storage import open_storage, resolve_url
from .study import ATTR, load_plain_study

TOP_CURVES = 10  # learning curves drawn for the best trials


@dataclass
class OptimizerRow:
    optimizer: str
    trials: int  # finished (complete + pruned)
    complete: int
    best: float | None
    median: float | None
    best_trial: int | None
    best_config: dict[str, Any] | None = field(default=None, repr=False)


@dataclass
class StudyReport:
    study: str
    metric: str
    direction: str
    rows: list[OptimizerRow]
    importances: dict[str, float] | None
    importance_note: str | None
    comparison: dict[str, Any] | None


def optimizer_of(trial: optuna.trial.FrozenTrial) -> str:
    config = trial.user_attrs.get("config") or {}
    return str(config.get("optimizer", {}).get("name") or trial.params.get("optimizer", "?"))


def summarize(study: optuna.Study) -> StudyReport:
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
    by_optimizer: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in finished:
        by_optimizer.setdefault(optimizer_of(trial), []).append(trial)
    rows = []
    for name, trials in sorted(by_optimizer.items()):
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        values = [t.value for t in complete if t.value is not None]
        best = (max if maximize else min)(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type, return-value]
        rows.append(
            OptimizerRow(
                optimizer=name,
                trials=len(trials),
                complete=len(complete),
                best=best.value if best else None,
                median=statistics.median(values) if values else None,
                best_trial=best.number if best else None,
                best_config=best.user_attrs.get("config") if best else None,
            )
        )
    rows.sort(key=lambda r: (r.best is None, -(r.best or 0) if maximize else (r.best or 0)))
    importances, note = _importances(study)
    attrs = study.user_attrs.get(ATTR, {})
    return StudyReport(
        study=study.study_name,
        metric=attrs.get("metric", "value"),
        direction=study.direction.name.lower(),
        rows=rows,
        importances=importances,
        importance_note=note,
        comparison=study.user_attrs.get("comparison"),
    )


def _importances(study: optuna.Study) -> tuple[dict[str, float] | None, str | None]:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 4:
        return None, f"needs at least 4 complete trials, has {len(complete)}"
    try:
        return dict(optuna.importance.get_param_importances(study)), None
    except (RuntimeError, ValueError) as e:  # e.g. a space with nothing searched
        return None, str(e).splitlines()[0]


def load(storage: str | None, study_name: str) -> tuple[optuna.Study, StudyReport]:
    study = load_plain_study(open_storage(resolve_url(storage)), study_name)
    return study, summarize(study)


# -- the HTML page ---------------------------------------------------------------------------


def html_page(study: optuna.Study, report: StudyReport) -> str:
    figures = [("Optimization history", _history(study, report))]
    if any(r.complete for r in report.rows):
        figures.append((f"{report.metric} against the learning rate, per optimizer", _value_vs_lr(study, report)))
    curves = _learning_curves(study, report)
    if curves is not None:
        figures.append((f"Learning curves of the best {TOP_CURVES} trials", curves))
    if report.importances:
        figures.append(("Parameter importances", _importance_bars(report.importances)))
    parts = []
    for i, (title, figure) in enumerate(figures):
        # plotly.js once, inline: the page needs no network.
        parts.append(f"<h2>{html.escape(title)}</h2>" + figure.to_html(full_html=False, include_plotlyjs=(i == 0)))
    rows = "".join(
        f"<tr><td>{html.escape(r.optimizer)}</td><td>{r.trials}</td><td>{r.complete}</td><td>{_num(r.best)}</td>"
        f"<td>{_num(r.median)}</td><td>{'' if r.best_trial is None else r.best_trial}</td></tr>"
        for r in report.rows
    )
    best = report.rows[0] if report.rows and report.rows[0].best is not None else None
    best_html = (
        f"<h2>Best config (trial {best.best_trial}, {report.metric} = {_num(best.best)})</h2><pre>{html.escape(json.dumps(best.best_config, indent=2))}</pre>"
        if best
        else "<p>No trial has completed yet.</p>"
    )
    importance_note = f"<p>Importances: {html.escape(report.importance_note)}</p>" if report.importance_note else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hpsearch report: {html.escape(report.study)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#eee}}pre{{background:#f6f6f6;padding:1em}}</style>
</head><body>
<h1>Study {html.escape(report.study)}</h1>
<p>Validation {html.escape(report.metric)}, {html.escape(report.direction)}d.</p>
<h2>By optimizer</h2>
<table><tr><th>optimizer</th><th>trials</th><th>complete</th><th>best</th><th>median</th><th>best trial</th></tr>{rows}</table>
{best_html}
{comparison_html(report.comparison)}
{importance_note}
{''.join(parts)}
</body></html>
"""


def comparison_html(comparison: dict[str, Any] | None) -> str:
    if not comparison:
        return ""
    rows = "".join(
        f"<tr><td>{r['rank']}</td><td>{html.escape(r['optimizer'])}</td><td>{_num(r['mean'])} &plusmn; {_num(r['std'])}</td>"
        f"<td>{r['runs']}</td><td>{'' if r['p_value'] is None else _num(r['p_value'])}</td><td>{html.escape(r['verdict'])}</td></tr>"
        for r in comparison["ranking"]
    )
    return (
        f"<h2>Fair comparison: {comparison['budget']} tuning trials per optimizer, best re-trained with {comparison['seeds']} seeds</h2>"
        "<table><tr><th>rank</th><th>optimizer</th><th>mean &plusmn; std</th><th>seeds</th><th>p (paired t, vs. first)</th><th>difference</th></tr>"
        f"{rows}</table>"
    )


def _history(study: optuna.Study, report: StudyReport) -> Any:
    from optuna.visualization import plot_optimization_history

    figure = plot_optimization_history(study, target_name=report.metric)
    figure.update_layout(title=None)
    return figure


def _value_vs_lr(study: optuna.Study, report: StudyReport) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    for row in report.rows:
        trials = [t for t in complete if optimizer_of(t) == row.optimizer and t.user_attrs.get("config")]
        figure.add_trace(
            go.Scatter(
                x=[t.user_attrs["config"]["optimizer"]["lr"] for t in trials],
                y=[t.value for t in trials],
                mode="markers",
                name=row.optimizer,
                text=[f"trial {t.number}" for t in trials],
            )
        )
    figure.update_layout(xaxis={"type": "log", "title": "learning rate"}, yaxis={"title": report.metric})
    return figure


def _learning_curves(study: optuna.Study, report: StudyReport) -> Any:
    import plotly.graph_objects as go

    maximize = report.direction == "maximize"
    complete = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)) if t.intermediate_values]
    if not complete:
        return None
    best = sorted(complete, key=lambda t: t.value, reverse=maximize)[:TOP_CURVES]  # type: ignore[arg-type, return-value]
    figure = go.Figure()
    for t in best:
        steps = sorted(t.intermediate_values)
        figure.add_trace(
            go.Scatter(x=steps, y=[t.intermediate_values[s] for s in steps], mode="lines+markers", name=f"trial {t.number} ({optimizer_of(t)})")
        )
    figure.update_layout(xaxis={"title": "epoch"}, yaxis={"title": report.metric})
    return figure


def _importance_bars(importances: dict[str, float]) -> Any:
    import plotly.graph_objects as go

    names = list(importances)[::-1]
    return go.Figure(go.Bar(x=[importances[n] for n in names], y=names, orientation="h")).update_layout(xaxis={"title": "importance"})


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"
