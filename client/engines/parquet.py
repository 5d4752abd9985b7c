"""An audit's results as a Parquet directory dataset: one part file per finished row, each written under a
temporary name and renamed, so a killed run never leaves half a file and keeps every row it finished; read back
as one table, and compacted into one part at the end of a run.

Parquet files cannot be appended to, hence the directory. Files whose names start with "." (a part being
written) are not part of the dataset, as pyarrow's own discovery also ignores them.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from ..dataset import audit_columns

Slot = tuple[str, str, str]  # (id, target, key)

SCHEMA = pa.schema([
    ("id", pa.string()), ("target", pa.string()), ("key", pa.string()), ("text", pa.string()),
    ("answer", pa.string()), ("synergy_ratio", pa.float64()), ("total", pa.float64()), ("synergy", pa.float64()),
    ("suppression", pa.float64()), ("evaluations", pa.int64()), ("seconds", pa.float64()), ("seed", pa.int64()),
    ("method", pa.string()), ("phi", pa.list_(pa.float64())), ("phi_rows", pa.int32()), ("phi_cols", pa.int32()),
    ("tokens", pa.list_(pa.string())), ("explanation_json", pa.string()), ("error", pa.string()),
    ("role", pa.string()), ("model_answer", pa.string()), ("correct", pa.bool_()), ("f_syn", pa.float64()),
])
COLUMNS = tuple(SCHEMA.names)


def result_row(slot: Slot, text: str, answer: str, outcome: dict[str, Any]) -> dict[str, Any]:
    """The row of one explanation (``outcome["explanation"]``, Explanation.to_dict()) or of its failure
    (``outcome["error"]``), in :data:`SCHEMA`'s columns."""
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(id=slot[0], target=slot[1], key=slot[2], text=text, answer=answer)
    if "error" in outcome:
        row["error"] = str(outcome["error"])
        return row
    explanation = outcome["explanation"]
    phi = explanation["phi"]
    row.update({name: explanation["metrics"][name] for name in ("synergy_ratio", "total", "synergy", "suppression")})
    row.update(evaluations=explanation["evaluations"], seconds=explanation["seconds"], seed=explanation["seed"],
               method=explanation["method"], phi=[float(x) for line in phi for x in line], phi_rows=len(phi),
               phi_cols=len(phi[0]) if phi else 0, tokens=list(explanation["tokens"]),
               explanation_json=json.dumps(explanation), **audit_columns(explanation))
    return row


def read_audit(out: Path | str) -> pa.Table:
    """Every row of the audit directory ``out`` as one table (duplicates included, see :class:`ParquetSink`)."""
    parts = _parts(Path(out))
    if not parts:
        return SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(part, schema=SCHEMA) for part in parts])


class ParquetSink:
    """The built-in results sink (a :class:`multishap.client.audit.RowSink`): the audit directory ``out``.

    Reading, a later row for an (id, target, key) wins, except that an error never replaces a success, so a
    resumed run redoes only what failed or never finished.
    """

    def __init__(self, out: Path) -> None:
        if out.exists() and not out.is_dir():
            raise ValueError(f"the audit output {str(out)!r} is a file; it must be a directory of Parquet parts")
        out.mkdir(parents=True, exist_ok=True)
        for unfinished in out.glob(".part-*.tmp"):  # left by a killed run; only one run holds ``out``
            unfinished.unlink(missing_ok=True)
        self.out = out
        self.rows: dict[Slot, dict[str, Any]] = {}
        for row in read_audit(out).to_pylist():
            self._keep(row)

    def done(self) -> set[Slot]:
        """The (id, target, key) of every stored success."""
        return {slot for slot, row in self.rows.items() if row["error"] is None}

    def write(self, row: dict[str, Any]) -> None:
        """Store one row now, as a part file of its own."""
        full = {name: row.get(name) for name in COLUMNS}
        _write_part(self.out, [full])
        self._keep(full)

    def compact(self) -> None:
        """Replace the parts by one holding a row per (id, target, key), when there is more than one part: the new
        part is in place before the old ones go, so a kill in between leaves duplicates, which reading resolves."""
        old = _parts(self.out)
        if len(old) <= 1:
            return
        new = _write_part(self.out, list(self.rows.values()))
        for part in old:
            if part != new:
                part.unlink(missing_ok=True)

    def _keep(self, row: dict[str, Any]) -> None:
        slot = (row["id"], row["target"], row["key"])
        earlier: Optional[dict[str, Any]] = self.rows.get(slot)
        if row["error"] is None or earlier is None or earlier["error"] is not None:
            self.rows[slot] = row


def _parts(out: Path) -> list[Path]:
    """The finished part files, oldest first (their names start with the time they were written)."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name.startswith("part-") and p.suffix == ".parquet")


def _write_part(out: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as a new part through a hidden temporary file and an atomic rename; the part's path."""
    name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    tmp, final = out / f".{name}.tmp", out / name
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final
