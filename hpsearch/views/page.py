"""A study's report as one self-contained HTML page (`hpsearch report STUDY -o report.html`).

plotly.js is inlined once, so the page needs no network: the optimization history, the value
against the learning rate for each optimizer, the learning curves of the best trials, the
parameter importances, and, for a comparison (`hpsearch compare`), its ranking.
"""

from __future__ import annotations

import html
import json
from typing import Any

import optuna

from .summary import StudyReport, optimizer_of

TOP_CURVES = 10  # learning curves drawn for the best trials


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
