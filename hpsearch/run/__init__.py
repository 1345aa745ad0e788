"""Stage 6, running: the worker (and its pieces), the launcher, worker processes and signals,
Dask, progress, and the two commands that run searches of their own (compare, bench).
"""
