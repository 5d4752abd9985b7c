"""Persisted jobs: the tables, their Alembic migrations and the store every explainer replica shares.

SQLite by default (one file, or memory), PostgreSQL for replicas that share jobs. Nothing here
knows gRPC: requests and results are stored as the serialised protobuf bytes the servicer
hands over, and read back the same way.
"""

from multishap.service.jobstore.store import ItemClaim, JobRecord, JobStore, RowRecord, open_store

__all__ = ["ItemClaim", "JobRecord", "JobStore", "RowRecord", "open_store"]
