"""explain_dataset resumes only what is asked again, against a real explainer and synthetic adapter."""

import fcntl
import json

import numpy as np
import pytest

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import ExplainerClient
from multishap.service.rpc.config import Limits
from servers import TEXT, adapters, explainer

PARAMS = {"family": "mlp", "seed": "1"}  # every order of interaction: sampled Phi depends on budget and seed


class FlakyBackend(SyntheticBackend):
    """The synthetic game, answering NaN while ``broken`` (a model that fails, then recovers)."""

    def __init__(self) -> None:
        self.broken = False

    def forward(self, instance, masks):
        values = super().forward(instance, masks)
        return np.full_like(values, np.nan) if self.broken else values


@pytest.fixture(scope="module")
def service():
    backend = FlakyBackend()
    with adapters(backend) as (a,), explainer({"syn": [a.address]}, Limits(max_concurrent_explanations=8)) as (e, _, _):
        with ExplainerClient(e.address, timeout=60) as client:
            yield backend, client


@pytest.fixture()
def client(service):
    backend, client = service
    backend.broken = False
    return client


def records(n: int = 2, **fields) -> list[dict]:
    return [{"id": f"i{k}", "image": png(seed=k), "text": TEXT, "parameters": PARAMS, **fields} for k in range(n)]


def run(client, out, recs=None, **options):
    options.setdefault("budget", 300)
    options.setdefault("grid", (2, 2))
    return client.explain_dataset(records() if recs is None else recs, target="syn", out=out, concurrency=2,
                                  progress=False, **options)


def lines(out) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def phi(out, key: str, row_id: str = "i0") -> np.ndarray:
    [row] = [r for r in lines(out) if r["id"] == row_id and r.get("key") == key]
    return np.asarray(row["explanation"]["phi"])


@pytest.mark.parametrize("before, after", [
    ({"grid": (2, 2)}, {"grid": (2, 3)}),
    ({"budget": 300}, {"budget": 600}),
    ({"method": "multishap"}, {"method": "kernel"}),
    ({"seed": 0}, {"seed": 5}),
])
def test_a_changed_option_redoes_the_rows(client, tmp_path, before, after):
    out = tmp_path / "results.jsonl"
    first = run(client, out, **before)
    second = run(client, out, **after)
    assert first.skipped == 0 and second.skipped == 0 and len(second.rows) == 2 and not second.failed
    assert first.rows != second.rows
    keys = [r["key"] for r in lines(out) if r["id"] == "i0"]
    assert len(keys) == 2 and keys[0] != keys[1]
    before_phi, after_phi = phi(out, keys[0]), phi(out, keys[1])
    assert before_phi.shape != after_phi.shape or not np.allclose(before_phi, after_phi)
    assert run(client, out, **after).skipped == 2 and run(client, out, **before).skipped == 2


def test_a_changed_image_under_the_same_id_is_redone(client, tmp_path):
    out = tmp_path / "results.jsonl"
    run(client, out)
    changed = [dict(r, image=png(seed=10 + k)) for k, r in enumerate(records())]
    assert run(client, out, changed).skipped == 0
    assert run(client, out, changed).skipped == 2


def test_defaults_given_explicitly_reuse_the_rows(client, tmp_path):
    out = tmp_path / "results.jsonl"
    run(client, out)
    again = run(client, out, method="auto", seed=0, index="SII", image_baseline=None, text_mask="")
    assert again.skipped == 2 and len(again.rows) == 2


def test_rows_without_a_key_are_redone(client, tmp_path):
    out = tmp_path / "results.jsonl"
    run(client, out)
    out.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "key"}) + "\n" for r in lines(out)))
    assert run(client, out).skipped == 0


def test_a_failed_row_is_replaced_when_it_succeeds(service, client, tmp_path):
    backend, _ = service
    out = tmp_path / "results.jsonl"
    backend.broken = True
    for _ in range(2):
        failed = run(client, out)
        assert sorted(f["id"] for f in failed.failed) == ["i0", "i1"] and not failed.rows
        assert sorted(r["id"] for r in lines(out)) == ["i0", "i1"] and all("error" in r for r in lines(out))
    backend.broken = False
    fixed = run(client, out)
    assert not fixed.failed and len(fixed.rows) == 2
    assert sorted(r["id"] for r in lines(out)) == ["i0", "i1"] and all("explanation" in r for r in lines(out))


def test_a_truncated_last_line_is_skipped_with_a_warning_and_redone(client, tmp_path):
    out = tmp_path / "results.jsonl"
    run(client, out)
    text = out.read_text()
    out.write_text(text[: len(text) - 40])
    with pytest.warns(UserWarning, match=r"results.jsonl:2: .*not a JSON result"):
        again = run(client, out)
    assert again.skipped == 1 and len(again.rows) == 2 and not again.failed
    assert sorted(r["id"] for r in lines(out)) == ["i0", "i1"]


def test_a_malformed_middle_line_is_skipped_with_a_warning(client, tmp_path):
    out = tmp_path / "results.jsonl"
    run(client, out)
    first, second = out.read_text().splitlines()
    out.write_text(f"{first}\n{{not json\n{second}\n")
    with pytest.warns(UserWarning, match=r"results.jsonl:2: "):
        again = run(client, out)
    assert again.skipped == 2 and len(lines(out)) == 2


def test_a_second_run_on_the_same_file_is_refused(client, tmp_path):
    out = tmp_path / "results.jsonl"
    with open(tmp_path / "results.jsonl.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(ValueError, match="another run"):
            run(client, out)
    assert not out.exists()
