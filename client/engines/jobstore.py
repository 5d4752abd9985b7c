"""An audit's rows in the explainer's job store too: one dataset job per target, run by the audit's engine.

The jobs are stored with runner ``"audit"``, so explainer replicas sharing the store never claim
their items, but serve them like any job (``multishap jobs get``, ``WatchJob``, the SDK's
``client.job(id)``). Each item is the ExplainRequest the audit sends, with its row key; a resumed
audit of the same name continues the same jobs, and a target whose items changed (another
manifest, other options) gets a new job.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional, Sequence

from multishap.service.jobstore import JobRecord, JobStore, open_store
from multishap.v1 import jobs_pb2

from ..dataset import explain_options, instance_id, row_key
from ..explanation import Explanation
from ..requests import explain_call

RUNNER = "audit"


class JobStoreSink:
    """A :class:`multishap.client.audit.RowSink` writing to the job store at ``url`` (a SQLAlchemy URL), under jobs
    named ``name`` (one per target)."""

    def __init__(self, url: str, name: str, records: Sequence[Mapping[str, Any]], targets: Sequence[str],
                 options: Mapping[str, Any], owner: str = "") -> None:
        if not name or len(name) > 200:
            raise ValueError("an audit stored in the job store needs a name of 1 to 200 characters")
        self.store: JobStore = open_store(url)
        self.jobs: dict[str, JobRecord] = {}
        self._items: dict[tuple[str, str], str] = {}    # (id, key) -> the item's id within its job
        per_call = {k: v for k, v in options.items() if k != "timeout"}
        for target in targets:
            planned = _plan(records, target, per_call)
            for (row_id, key), item_id in zip(((r, k) for r, k, _ in planned), _item_ids(planned)):
                self._items[(row_id, key)] = item_id
            self.jobs[target] = self._job(name, target, owner, planned)

    def _job(self, name: str, target: str, owner: str, planned: list[tuple[str, str, bytes]]) -> JobRecord:
        """The job of this name at ``target`` holding exactly the planned items, continued or new."""
        item_ids = _item_ids(planned)
        wanted = {item_id: key for item_id, (_, key, _) in zip(item_ids, planned)}
        found = self.store.find(name, target, RUNNER)
        if found is not None and {i: key for i, (key, _) in self.store.keys(found.id).items()} == wanted:
            return found
        return self.store.submit(jobs_pb2.JOB_KIND_DATASET, target, name, owner,
                                 [(i, request) for i, (_, _, request) in zip(item_ids, planned)], runner=RUNNER,
                                 keys=[key for _, key, _ in planned])

    def done(self) -> set[tuple[str, str, str]]:
        """(id, target, key) of the rows the jobs hold successfully."""
        stored = set()
        by_item = {item_id: slot for slot, item_id in self._items.items()}
        for target, job in self.jobs.items():
            for item_id, (key, ok) in self.store.keys(job.id).items():
                if ok and item_id in by_item:
                    stored.add((by_item[item_id][0], target, key))
        return stored

    def write(self, row: dict) -> None:
        """Store one audit row (the Parquet sink's columns) as its job's row."""
        job = self.jobs.get(row["target"])
        item_id = self._items.get((row["id"], row["key"]))
        if job is None or item_id is None:
            return
        if row["error"] is not None:
            self.store.record(job.id, item_id, None, str(row["error"]))
            return
        message = Explanation.from_dict(json.loads(row["explanation_json"])).to_proto()
        self.store.record(job.id, item_id, message.SerializeToString(deterministic=True), None,
                          message.metrics.synergy_ratio, message.usage.SerializeToString(deterministic=True))

    def close(self) -> None:
        self.store.close()


def _plan(records: Sequence[Mapping[str, Any]], target: str,
          options: Mapping[str, Any]) -> list[tuple[str, str, bytes]]:
    """(id, row key, serialised ExplainRequest) of each record at ``target``, once per (id, key)."""
    planned: dict[tuple[str, str], bytes] = {}
    for record in records:
        try:
            key = row_key(record, target, options)
        except ValueError:
            continue  # the audit writes this record's error row without a key; no job item holds it
        call = explain_call(record["image"], record["text"], target=target, **explain_options(record, options))
        planned.setdefault((instance_id(record), key), call.request.SerializeToString(deterministic=True))
    return [(row_id, key, request) for (row_id, key), request in planned.items()]


def _item_ids(planned: list[tuple[str, str, bytes]]) -> list[str]:
    """Each planned row's item id: its record id, with its key's start when two rows share an id."""
    counts: dict[str, int] = {}
    for row_id, _, _ in planned:
        counts[row_id] = counts.get(row_id, 0) + 1
    return [row_id if counts[row_id] == 1 else f"{row_id}@{key[:12]}"[:200] for row_id, key, _ in planned]


def job_store_sink(url: Optional[str], name: str, records: Sequence[Mapping[str, Any]], targets: Sequence[str],
                   options: Mapping[str, Any]) -> list[JobStoreSink]:
    """The job-store sink an audit asked for (none without a URL)."""
    return [] if not url else [JobStoreSink(url, name, records, targets, options)]
