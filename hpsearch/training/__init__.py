"""Stage 3, training: data, models, losses and metrics, and the two engines.

`train` trains one trial config at a time with stock torch.optim objects and defines what
correct means; `train_cohort` trains K configs at once as one stacked model and must give
each member the same numbers. Nothing here imports the database, the search or the workers.
"""
