"""Engines for tasks: made by the one factory, inside the process that runs the task.

Engines are cached per process and URL so a fan-out of many small tasks reuses one
connection pool; no engine or connection ever travels between tasks.
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine

from selective_sync.db import make_engine


@lru_cache(maxsize=16)
def engine_for(url: str) -> Engine:
    return make_engine(url)
