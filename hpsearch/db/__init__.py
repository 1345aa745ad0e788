"""Stage 4, the database: storage URLs and engines, both schema versions, hpsearch's own
tables, and bulk writes into Optuna's tables for whole cohorts.

Nothing here imports torch.
"""
