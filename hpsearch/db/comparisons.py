"""`hpsearch compare`'s results: one row per comparison, its ranking and per-seed values."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import Engine

from .tables import comparisons, now


def record_comparison(db: Engine, name: str, study_file_sha256: str, budget: int, seeds: int, result: dict[str, Any]) -> None:
    with db.begin() as conn:
        conn.execute(
            comparisons.insert().values(
                name=name, study_file_sha256=study_file_sha256, budget=budget, seeds=seeds,
                created_at=now(), result=json.dumps(result),
            )
        )
