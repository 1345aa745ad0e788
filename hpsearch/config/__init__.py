"""Stage 1, the study: a study file becomes a validated, frozen spec; the catalog of
optimizers and schedules; a spec becomes trial configs through Optuna's suggest calls.

Nothing here imports torch or SQLAlchemy; only `space` speaks to an Optuna trial, and only
through the object it is handed.
"""
