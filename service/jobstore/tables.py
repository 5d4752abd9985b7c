"""The job store's schema: one row per job, one per item of a job (its request, lease and result).

The migrations in :mod:`multishap.service.jobstore.migrations` create exactly these tables; a
test checks that the migrated schema and this metadata agree.
"""

from __future__ import annotations

from sqlalchemy import (Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table, Text,
                        UniqueConstraint)

metadata = MetaData()

# Job states (the values of multishap.v1.JobState) and item states.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = 1, 2, 3, 4, 5
ENDED = (SUCCEEDED, FAILED, CANCELLED)
ITEM_QUEUED, ITEM_RUNNING, ITEM_DONE = 0, 1, 2

jobs = Table(
    "jobs", metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", Integer, nullable=False),
    Column("state", Integer, nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("target", String(200), nullable=False),
    Column("owner", String(200), nullable=False, default=""),
    Column("items_total", Integer, nullable=False),
    Column("items_done", Integer, nullable=False, default=0),
    Column("items_failed", Integer, nullable=False, default=0),
    Column("created", Float, nullable=False),
    Column("started", Float, nullable=False, default=0.0),
    Column("finished", Float, nullable=False, default=0.0),
    Column("error", Text, nullable=False, default=""),
    Column("version", Integer, nullable=False, default=0),
    # "" : explainer replicas run the items; a name ("audit"): an engine outside the explainer (a Ray audit)
    # runs them and records each row itself, and replicas never claim them.
    Column("runner", String(32), nullable=False, server_default=""),
    Index("ix_jobs_state_created", "state", "created"),
)

items = Table(
    "job_items", metadata,
    Column("job_id", String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item_id", String(200), nullable=False),
    Column("request", LargeBinary, nullable=False),
    Column("state", Integer, nullable=False, default=ITEM_QUEUED),
    Column("lease_owner", String(64), nullable=False, default=""),
    Column("lease_expires", Float, nullable=False, default=0.0),
    Column("attempts", Integer, nullable=False, default=0),
    Column("row", Integer),
    Column("result", LargeBinary),
    Column("error", Text),
    Column("synergy_ratio", Float),
    Column("usage", LargeBinary),
    Column("ran_by", String(64), nullable=False, default=""),
    Column("row_key", String(64)),          # an external runner's digest of what changes the row (its resume key)
    UniqueConstraint("job_id", "item_id", name="uq_job_items_item"),
    Index("ix_job_items_claim", "state", "lease_expires"),
    Index("ix_job_items_row", "job_id", "row"),
)
