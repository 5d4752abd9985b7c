"""The job store: submit, claim and finish job items under leases, read jobs and their rows.

Every explainer replica that shares a database runs the same loop: :meth:`JobStore.claim` an
item (a row lock with ``SKIP LOCKED`` on PostgreSQL, a compare-and-set update everywhere), keep
its lease with :meth:`JobStore.renew` while it runs, and :meth:`JobStore.finish` it, which
stores the row only while the lease is still held. A replica that dies stops renewing; once
its lease expires another replica claims the item again, so no item is lost and none is run by
two live replicas at once. Rows are numbered 1, 2, ... in the order they are stored, under the
job's row lock, so a watcher can resume from the last row it saw. Times are the replicas' wall
clocks (keep them in sync, as NTP does; a lease is tens of seconds).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Optional, Sequence

from sqlalchemy import Engine, and_, create_engine, event, func, or_, select, text, update
from sqlalchemy.pool import StaticPool

from multishap.service.jobstore.tables import (CANCELLED, ENDED, FAILED, ITEM_DONE, ITEM_QUEUED, ITEM_RUNNING,
                                               QUEUED, RUNNING, SUCCEEDED, items, jobs)

MIGRATIONS = Path(__file__).parent / "migrations"
# Tries of a claim that another claimer beat to its item before giving up until the next poll.
CLAIM_TRIES = 3
# PostgreSQL advisory-lock classes: submissions of one owner, one at a time (the pending-items check).
_SUBMIT_LOCK = 0x6A6F6273  # "jobs"
# Serialises concurrent migrations of one PostgreSQL database (replicas starting together).
_MIGRATION_LOCK = 0x6D756C7469  # "multi"


class TooManyPending(Exception):
    """A submission that would leave its owner more unfinished items than allowed; ``pending`` is how many it has."""

    def __init__(self, pending: int) -> None:
        super().__init__(f"{pending} items pending")
        self.pending = pending


@dataclass(frozen=True)
class JobRecord:
    """One job as stored: its counters and times; results live in its rows."""

    id: str
    kind: int
    state: int
    name: str
    target: str
    owner: str
    items_total: int
    items_done: int
    items_failed: int
    created: float
    started: float
    finished: float
    error: str
    version: int
    runner: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED


@dataclass(frozen=True)
class RowRecord:
    """One finished item: its serialised result, or its error."""

    row: int
    item_id: str
    result: Optional[bytes]
    error: Optional[str]
    attempts: int


@dataclass(frozen=True)
class ItemClaim:
    """An item this replica holds the lease of: what to run and for which job."""

    job_id: str
    position: int
    item_id: str
    kind: int
    target: str
    request: bytes
    attempts: int


class JobStore:
    """Jobs and their items in one SQLAlchemy database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        # One process's SQLite writers take turns here rather than in SQLite's busy loop.
        self._lock = threading.Lock() if self.sqlite else nullcontext()

    @contextmanager
    def _transaction(self) -> Iterator:
        with self._lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator:
        """A connection for reading; on SQLite it takes the writers' turn too (a memory store's one shared
        connection must never be read while a write is half done)."""
        with self._lock, self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def submit(self, kind: int, target: str, name: str, owner: str, requests: Sequence[tuple[str, bytes]],
               runner: str = "", keys: Optional[Sequence[str]] = None,
               max_pending: Optional[int] = None) -> JobRecord:
        """Store a job of ``requests`` ((item id, serialised request) each), QUEUED, in one transaction. A
        ``runner`` other than "" runs the items itself (:meth:`record`), with ``keys`` as their resume keys.
        With ``max_pending``, :class:`TooManyPending` when ``owner``'s unfinished items would exceed it (checked
        in the same transaction, one submission of an owner at a time)."""
        job_id = uuid.uuid4().hex
        now = time.time()
        keys = list(keys) if keys is not None else [None] * len(requests)
        with self._transaction() as conn:
            if max_pending is not None:
                if self.engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:a, hashtext(:owner))"),
                                 {"a": _SUBMIT_LOCK, "owner": owner})
                pending = conn.execute(self._pending(owner)).scalar_one()
                if pending + len(requests) > max_pending:
                    raise TooManyPending(int(pending))
            conn.execute(jobs.insert().values(
                id=job_id, kind=kind, state=QUEUED, name=name, target=target, owner=owner,
                items_total=len(requests), items_done=0, items_failed=0, created=now, started=0.0, finished=0.0,
                error="", version=0, runner=runner))
            conn.execute(items.insert(), [
                dict(job_id=job_id, position=n, item_id=item_id, request=request, state=ITEM_QUEUED, lease_owner="",
                     lease_expires=0.0, attempts=0, ran_by="", row_key=key)
                for n, ((item_id, request), key) in enumerate(zip(requests, keys))])
        found = self.get(job_id)
        assert found is not None
        return found

    def get(self, job_id: str) -> Optional[JobRecord]:
        with self._read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id)).first()
        return None if row is None else JobRecord(**row._mapping)

    def list(self, state: Optional[int], limit: int, after: Optional[tuple[float, str]] = None,
             owner: Optional[str] = None) -> list[JobRecord]:
        """Jobs newest first (of one state, and one owner, when given), after the (created, id) of a previous page."""
        query = select(jobs).order_by(jobs.c.created.desc(), jobs.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if owner is not None:
            query = query.where(jobs.c.owner == owner)
        if after is not None:
            created, job_id = after
            query = query.where(or_(jobs.c.created < created, and_(jobs.c.created == created, jobs.c.id < job_id)))
        with self._read() as conn:
            return [JobRecord(**row._mapping) for row in conn.execute(query)]

    def cancel(self, job_id: str) -> Optional[JobRecord]:
        """Mark a job that has not ended CANCELLED; its running items stop at their next lease renewal."""
        with self._transaction() as conn:
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state.in_((QUEUED, RUNNING)))
                         .values(state=CANCELLED, finished=time.time(), version=jobs.c.version + 1))
        return self.get(job_id)

    @staticmethod
    def _pending(owner: str):
        """Items of ``owner``'s jobs that have not ended and have no row yet."""
        return select(func.coalesce(func.sum(jobs.c.items_total - jobs.c.items_done), 0)).where(
            jobs.c.owner == owner, jobs.c.state.in_((QUEUED, RUNNING)))

    def claim(self, owner: str, lease_s: float, targets: Optional[Collection[str]] = None) -> Optional[ItemClaim]:
        """Take the oldest job's next item (at one of ``targets``, when given) that nobody holds, whose holder's
        lease expired, or whose retry delay is over; None when there is none."""
        for _ in range(CLAIM_TRIES):
            claimed = self._claim_once(owner, lease_s, targets)
            if claimed is not False:
                return claimed
        return None

    def _claim_once(self, owner: str, lease_s: float, targets: Optional[Collection[str]]):
        """One claim: the item, None when no item is free, False when another claimer took it first."""
        now = time.time()
        free = or_(and_(items.c.state == ITEM_QUEUED, items.c.lease_expires <= now),
                   and_(items.c.state == ITEM_RUNNING, items.c.lease_expires < now))
        wanted = [jobs.c.state.in_((QUEUED, RUNNING)), jobs.c.runner == "", free]
        if targets is not None:
            wanted.append(jobs.c.target.in_(sorted(targets)))
        candidate = (select(items.c.job_id, items.c.position)
                     .join(jobs, jobs.c.id == items.c.job_id)
                     .where(*wanted)
                     .order_by(jobs.c.created, items.c.position).limit(1)
                     .with_for_update(skip_locked=True, of=items))
        with self._transaction() as conn:
            found = conn.execute(candidate).first()
            if found is None:
                return None
            job_id, position = found
            taken = conn.execute(
                update(items).where(items.c.job_id == job_id, items.c.position == position, free)
                .values(state=ITEM_RUNNING, lease_owner=owner, lease_expires=now + lease_s,
                        attempts=items.c.attempts + 1, ran_by=owner))
            if taken.rowcount != 1:
                return False
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == QUEUED)
                         .values(state=RUNNING, started=now, version=jobs.c.version + 1))
            row = conn.execute(
                select(items.c.item_id, items.c.request, items.c.attempts, jobs.c.kind, jobs.c.target)
                .join(jobs, jobs.c.id == items.c.job_id)
                .where(items.c.job_id == job_id, items.c.position == position)).one()
        return ItemClaim(job_id, position, row.item_id, row.kind, row.target, row.request, row.attempts)

    def renew(self, claim: ItemClaim, owner: str, lease_s: float) -> str:
        """Extend the lease: "kept"; "lost" when another claim holds the item now; "ended" when the job was
        cancelled (stop working on the item either way)."""
        with self._transaction() as conn:
            kept = conn.execute(
                update(items).where(*self._held(claim, owner)).values(lease_expires=time.time() + lease_s)).rowcount
            state = conn.execute(select(jobs.c.state).where(jobs.c.id == claim.job_id)).scalar_one()
        if state in ENDED:
            return "ended"
        return "kept" if kept == 1 else "lost"

    def release(self, claim: ItemClaim, owner: str, delay_s: float = 0.0) -> None:
        """Give an unfinished item back (a replica stopping: at once, so nobody waits for the lease; a target
        that was down: claimable again after ``delay_s``)."""
        with self._transaction() as conn:
            conn.execute(update(items).where(*self._held(claim, owner))
                         .values(state=ITEM_QUEUED, lease_owner="",
                                 lease_expires=time.time() + delay_s if delay_s else 0.0))

    def finish(self, claim: ItemClaim, owner: str, result: Optional[bytes], error: Optional[str],
               synergy_ratio: Optional[float] = None, usage: Optional[bytes] = None) -> Optional[int]:
        """Store the item's row while its lease is held; its row number, or None when the lease was lost
        (the replica that holds it now stores the row). The job SUCCEEDS with its last row; a one-item
        job whose item failed FAILS with its error."""
        with self._transaction() as conn:
            if self._ended(conn, claim.job_id):
                return None
            stored = conn.execute(
                update(items).where(*self._held(claim, owner))
                .values(state=ITEM_DONE, result=result, error=error, synergy_ratio=synergy_ratio, usage=usage,
                        lease_owner="", lease_expires=0.0)).rowcount
            if stored != 1:
                return None
            return self._number(conn, claim.job_id, items.c.position == claim.position, error)

    def record(self, job_id: str, item_id: str, result: Optional[bytes], error: Optional[str],
               synergy_ratio: Optional[float] = None, usage: Optional[bytes] = None) -> Optional[int]:
        """Store the row of an item of an external runner's job; its row number, or None when it already has one.
        A success replaces an error row (a resumed audit redoing what failed), under its row number."""
        now = time.time()
        with self._transaction() as conn:
            if result is not None:
                redone = conn.execute(
                    update(items).where(items.c.job_id == job_id, items.c.item_id == item_id,
                                        items.c.state == ITEM_DONE, items.c.error.is_not(None))
                    .values(result=result, error=None, synergy_ratio=synergy_ratio, usage=usage,
                            attempts=items.c.attempts + 1)
                    .returning(items.c.row)).first()
                if redone is not None:
                    conn.execute(update(jobs).where(jobs.c.id == job_id)
                                 .values(items_failed=jobs.c.items_failed - 1, version=jobs.c.version + 1))
                    return redone.row
            if self._ended(conn, job_id):
                return None
            stored = conn.execute(
                update(items).where(items.c.job_id == job_id, items.c.item_id == item_id, items.c.state != ITEM_DONE)
                .values(state=ITEM_DONE, result=result, error=error, synergy_ratio=synergy_ratio, usage=usage,
                        attempts=items.c.attempts + 1)).rowcount
            if stored != 1:
                return None
            conn.execute(update(jobs).where(jobs.c.id == job_id, jobs.c.state == QUEUED)
                         .values(state=RUNNING, started=now))
            return self._number(conn, job_id, items.c.item_id == item_id, error)

    @staticmethod
    def _ended(conn, job_id: str) -> bool:
        """Whether the job has ended, with its row locked (PostgreSQL) until the transaction ends, so a cancel
        cannot slip in between this check and the row being stored: after a job's last event, no row comes (on
        SQLite the IMMEDIATE transaction holds the database's write lock instead)."""
        state = conn.execute(select(jobs.c.state).where(jobs.c.id == job_id).with_for_update()).scalar_one()
        return state in ENDED

    @staticmethod
    def _number(conn, job_id: str, item: Any, error: Optional[str]) -> int:
        """Count a stored row under the job's row lock, number it, and end the job with its last row."""
        counted = conn.execute(
            update(jobs).where(jobs.c.id == job_id)
            .values(items_done=jobs.c.items_done + 1, items_failed=jobs.c.items_failed + int(error is not None),
                    version=jobs.c.version + 1)
            .returning(jobs.c.items_done, jobs.c.items_total, jobs.c.state)).one()
        conn.execute(update(items).where(items.c.job_id == job_id, item).values(row=counted.items_done))
        if counted.items_done == counted.items_total and counted.state == RUNNING:
            failed = error is not None and counted.items_total == 1
            conn.execute(update(jobs).where(jobs.c.id == job_id)
                         .values(state=FAILED if failed else SUCCEEDED, error=error if failed else "",
                                 finished=time.time()))
        return counted.items_done

    def find(self, name: str, target: str, runner: str) -> Optional[JobRecord]:
        """The newest job of this name, target and runner that was not cancelled (what a resumed audit continues)."""
        query = (select(jobs).where(jobs.c.name == name, jobs.c.target == target, jobs.c.runner == runner,
                                    jobs.c.state != CANCELLED)
                 .order_by(jobs.c.created.desc()).limit(1))
        with self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else JobRecord(**row._mapping)

    def keys(self, job_id: str) -> dict[str, tuple[Optional[str], bool]]:
        """Each item's resume key and whether it has a successful row."""
        query = select(items.c.item_id, items.c.row_key, items.c.state, items.c.error).where(items.c.job_id == job_id)
        with self._read() as conn:
            return {r.item_id: (r.row_key, r.state == ITEM_DONE and r.error is None) for r in conn.execute(query)}

    def rows(self, job_id: str, after_row: int = 0, limit: int = 100) -> list[RowRecord]:
        """Rows numbered above ``after_row``, in order, at most ``limit``."""
        query = (select(items.c.row, items.c.item_id, items.c.result, items.c.error, items.c.attempts)
                 .where(items.c.job_id == job_id, items.c.state == ITEM_DONE, items.c.row > after_row)
                 .order_by(items.c.row).limit(limit))
        with self._read() as conn:
            return [RowRecord(*row) for row in conn.execute(query)]

    def summary(self, job_id: str) -> tuple[list[float], list[bytes]]:
        """The synergy ratios of the explanation rows, and every row's serialised usage."""
        query = select(items.c.synergy_ratio, items.c.usage).where(items.c.job_id == job_id,
                                                                   items.c.state == ITEM_DONE)
        with self._read() as conn:
            found = conn.execute(query).all()
        return ([r.synergy_ratio for r in found if r.synergy_ratio is not None],
                [r.usage for r in found if r.usage])

    def attempts(self, job_id: str) -> dict[str, tuple[int, str]]:
        """Each item's starts and the replica that last ran it (what the fault tests check)."""
        query = select(items.c.item_id, items.c.attempts, items.c.ran_by).where(items.c.job_id == job_id)
        with self._read() as conn:
            return {r.item_id: (r.attempts, r.ran_by) for r in conn.execute(query)}

    @staticmethod
    def _held(claim: ItemClaim, owner: str) -> tuple:
        """The item as this claim left it: running, leased by ``owner``, not claimed again since (``attempts``
        fences off a claim of the same replica that took over after a stall)."""
        return (items.c.job_id == claim.job_id, items.c.position == claim.position, items.c.state == ITEM_RUNNING,
                items.c.lease_owner == owner, items.c.attempts == claim.attempts)


def open_store(url: str = "") -> JobStore:
    """The store at ``url`` (a SQLAlchemy URL; "" for memory), migrated to the current schema.

    SQLite files run in WAL mode with a busy timeout, so a reader never blocks the writer; a
    PostgreSQL URL needs a driver, ``postgresql+psycopg://user:password@host/db``.
    """
    if not url or url in ("sqlite://", "sqlite:///:memory:"):
        engine = create_engine("sqlite://", poolclass=StaticPool, hide_parameters=True,
                               connect_args={"check_same_thread": False})
    else:
        try:
            engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=_connect_args(url))
        except Exception as err:  # noqa: BLE001 - SQLAlchemy raises several kinds for a bad URL or driver
            raise ValueError(f"the job store URL is not usable: {type(err).__name__}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    try:
        migrate(engine)
    except Exception as err:  # noqa: BLE001 - an unreachable or refusing database
        engine.dispose()
        raise OSError(f"could not open the job store ({engine.dialect.name}): {reason(err)}") from None
    return JobStore(engine)


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema with Alembic (several replicas may start at once)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def schema_revision(engine: Engine) -> Optional[str]:
    """The Alembic revision the database is at (None before the first migration)."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # noqa: BLE001 - no version table yet
            return None


def _connect_args(url: str) -> dict:
    return {} if url.startswith("sqlite") else {"connect_timeout": 10}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Foreign keys, a 30 s busy timeout, WAL for files; and transactions left to :func:`_sqlite_begin`."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    if cursor.execute("PRAGMA database_list").fetchone()[2]:  # a file, not memory
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _sqlite_begin(conn) -> None:
    """Begin every SQLite transaction as IMMEDIATE: it takes the write lock at once, so a check and the write
    that depends on it (a job not ended, then its row) see no other process's commit in between."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def reason(err: Exception) -> str:
    """A one-line reason with no URL, host, address or user name in it (quoted parts are dropped)."""
    original = getattr(err, "orig", None) or err
    said = re.sub(r'"[^"]*"|\'[^\']*\'|\b\d{1,3}(\.\d{1,3}){3}\b|\S+://\S+', "…", " ".join(str(original).split()))
    return f"{type(original).__name__}: {said[:160]}"


