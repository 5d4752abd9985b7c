"""Persistent store of paid answers (SQLite in WAL mode), so no masked input is paid twice.

A key is the SHA-256 of everything that shapes the answer: base URL, model, the request
options, the rendered prompt and the masked image (its pixels; PNG encoding is
deterministic). Credentials pick who pays, not what the model answers, so they are not in
it: the base URL counts in its display form (no password, query values hidden), and
rotating a key, password or ``?key=`` token keeps the cache. The value is the parsed
answer (log-probabilities and token usage), not a score, so a different target or score
unit is answered from the same entries. Every answer is committed before it is used; WAL
mode keeps committed answers across a crash of the adapter and lets several adapter
replicas share one file. The same file keeps what each explanation has spent, so replicas
sharing it share one allowance per explanation.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterable, Optional

from .scoring import Answer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    answer TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS spend (
    job TEXT PRIMARY KEY,
    requests INTEGER NOT NULL,
    cost REAL NOT NULL,
    updated REAL NOT NULL
);
"""
_SPEND_KEPT_S = 7 * 24 * 3600


class ScoreCache:
    """A key -> Answer store on disk; safe to use from several threads and processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._connection()
        conn.executescript(_SCHEMA)
        conn.execute("DELETE FROM spend WHERE updated < ?", (time.time() - _SPEND_KEPT_S,))

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        """The cached answers among ``keys``."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Answer] = {}
        conn = self._connection()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = conn.execute(
                f"SELECT key, answer FROM answers WHERE key IN ({','.join('?' * len(chunk))})", chunk
            ).fetchall()
            found.update((key, Answer.from_json(json.loads(text))) for key, text in rows)
        return found

    def put(self, key: str, answer: Answer) -> None:
        """Store (and commit) one answer."""
        self._connection().execute(
            "INSERT OR REPLACE INTO answers (key, answer, created) VALUES (?, ?, ?)",
            (key, json.dumps(answer.to_json()), time.time()),
        )

    def reserve(self, job: str, max_requests: Optional[int], max_cost: Optional[float]) -> Optional[tuple[int, float]]:
        """Count one paid request for ``job`` unless a cap is reached; then return (requests, cost) spent."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT requests, cost FROM spend WHERE job = ?", (job,)).fetchone()
            requests, cost = row if row else (0, 0.0)
            if (max_requests is not None and requests >= max_requests) or (max_cost is not None and cost >= max_cost):
                return requests, cost
            conn.execute("INSERT INTO spend (job, requests, cost, updated) VALUES (?, 1, 0, ?) ON CONFLICT(job) "
                         "DO UPDATE SET requests = requests + 1, updated = excluded.updated", (job, time.time()))
            return None
        finally:
            conn.execute("COMMIT")

    def charge(self, job: str, cost: float) -> None:
        """Add ``cost`` to what ``job`` has spent."""
        self._connection().execute(
            "INSERT INTO spend (job, requests, cost, updated) VALUES (?, 0, ?, ?) ON CONFLICT(job) "
            "DO UPDATE SET cost = cost + excluded.cost, updated = excluded.updated", (job, cost, time.time()))

    def __len__(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM answers").fetchone()[0]
