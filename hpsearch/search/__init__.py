"""Stage 5, the search: the Optuna study a spec runs, its sampler and pruner, its budget,
one-snapshot sampling and pruning for cohorts, warm starts, the study's note, and recovery
of trials whose worker died.
"""
