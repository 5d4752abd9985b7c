"""The blocking and asyncio clients make the same calls: one signature each, the masking options reaching the
adapter, progress bars, and explain_dataset writing and resuming one results file, against real servers."""

import asyncio
import inspect
import json

import numpy as np
import pytest

from images import png
from multishap.client import AsyncExplainerClient, ExplainerClient
from multishap.service.rpc.config import Limits
from multishap.v1 import common_pb2
from servers import RecordingBackend, TEXT, adapters, explainer

PARAMS = {"family": "mixed", "seed": "1"}
CALL = {"target": "syn", "grid": (2, 2), "parameters": PARAMS, "budget": 300}


@pytest.fixture()
def service():
    backend = RecordingBackend()
    with adapters(backend) as (a,), explainer({"syn": [a.address]}, Limits(max_concurrent_explanations=8)) as (e, _, _):
        yield backend, e.address


def call(address: str, kind: str, method: str, *args, **options):
    """``method`` of the ``kind`` ("sync" or "async") client, called with the arguments, to its result."""
    if kind == "sync":
        with ExplainerClient(address, timeout=60) as client:
            return getattr(client, method)(*args, **options)

    async def run():
        async with AsyncExplainerClient(address, timeout=60) as client:
            return await getattr(client, method)(*args, **options)

    return asyncio.run(run())


def public(cls) -> dict[str, inspect.Signature]:
    """Each public method's signature; an async client's ``AsyncX`` result counts as the blocking one's ``X``."""
    def plain(signature: inspect.Signature) -> inspect.Signature:
        result = signature.return_annotation
        return signature.replace(return_annotation=result.removeprefix("Async") if isinstance(result, str) else result)

    return {name: plain(inspect.signature(f)) for name, f in vars(cls).items()
            if callable(f) and not name.startswith("_")}


def test_both_clients_offer_the_same_calls_with_the_same_signatures():
    sync, aio = public(ExplainerClient), public(AsyncExplainerClient)
    assert set(sync) == set(aio) >= {"explain", "faithfulness", "explain_dataset", "targets", "close"}
    assert sync == aio
    assert "image_baseline" in sync["faithfulness"].parameters and "progress" in sync["explain_dataset"].parameters
    assert all(inspect.iscoroutinefunction(getattr(AsyncExplainerClient, name)) for name in aio)
    assert ExplainerClient.explain.__doc__ == AsyncExplainerClient.explain.__doc__


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize("method, options", [
    ("explain", {}),
    ("faithfulness", {"explainer": "random", "steps": 4}),
])
def test_the_masking_options_reach_the_adapter(service, kind, method, options):
    backend, address = service
    call(address, kind, method, png(), TEXT, image_baseline="blur", blur_radius=12.5, text_mask="pad", **CALL,
         **options)
    assert backend.masking == [common_pb2.MaskingOptions(image_baseline=common_pb2.IMAGE_BASELINE_BLUR,
                                                         blur_radius=12.5, text_mask="pad")]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_the_blur_baseline_changes_the_instance_from_the_zero_one(service, kind):
    backend, address = service
    for baseline in ("zero", "blur"):
        call(address, kind, "faithfulness", png(), TEXT, explainer="random", steps=4, image_baseline=baseline, **CALL)
    assert [m.image_baseline for m in backend.masking] == [common_pb2.IMAGE_BASELINE_ZERO,
                                                           common_pb2.IMAGE_BASELINE_BLUR]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_progress_true_draws_a_bar_and_a_callable_gets_updates(service, kind, capsys):
    _, address = service
    call(address, kind, "explain", png(), TEXT, progress=True, **CALL)
    drawn = capsys.readouterr().err
    assert "explaining" in drawn and "coalitions" in drawn and "/300" in drawn
    seen = []
    call(address, kind, "explain", png(seed=1), TEXT, progress=seen.append, **CALL)
    assert seen and all(p.evaluations <= p.budget == 300 for p in seen) and not capsys.readouterr().err


def test_progress_of_another_type_is_refused(service):
    _, address = service
    with pytest.raises(TypeError, match="progress must be True, False or a callable"):
        call(address, "async", "explain", png(), TEXT, progress="yes", **CALL)


def records(n: int) -> list[dict]:
    return [{"id": f"i{k}", "image": png(seed=k), "text": TEXT, "parameters": PARAMS} for k in range(n)]


def dataset(address: str, kind: str, out, n: int, **options):
    return call(address, kind, "explain_dataset", records(n), target="syn", out=out, concurrency=2, grid=(2, 2),
                budget=300, **options)


def lines(out) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("first, then", [("async", "sync"), ("sync", "async")])
def test_explain_dataset_writes_one_format_and_each_client_resumes_the_others_file(service, tmp_path, first, then):
    _, address = service
    out = tmp_path / "results.jsonl"
    started = dataset(address, first, out, 2, progress=False)
    resumed = dataset(address, then, out, 3, progress=False)
    assert started.skipped == 0 and resumed.skipped == 2 and len(resumed.rows) == 3 and not resumed.failed
    assert [r for r in resumed.rows if r["id"] != "i2"] == started.rows
    written = lines(out)
    assert sorted(r["id"] for r in written) == ["i0", "i1", "i2"]
    assert all(set(r) == {"id", "key", "text", "answer", "explanation"} for r in written)
    assert dataset(address, first, out, 3, progress=False).skipped == 3


def test_both_clients_write_the_same_rows(service, tmp_path):
    _, address = service
    sync, aio = (dataset(address, kind, tmp_path / f"{kind}.jsonl", 2, progress=False) for kind in ("sync", "async"))
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in sync.rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in aio.rows]
    by_id = {r["id"]: r for r in lines(tmp_path / "sync.jsonl")}
    for row in lines(tmp_path / "async.jsonl"):
        assert row["key"] == by_id[row["id"]]["key"]
        assert np.array_equal(row["explanation"]["phi"], by_id[row["id"]]["explanation"]["phi"])


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_explain_dataset_draws_a_bar_over_instances(service, tmp_path, kind, capsys):
    _, address = service
    out = tmp_path / "results.jsonl"
    dataset(address, kind, out, 2, progress=False)
    capsys.readouterr()
    dataset(address, kind, out, 3, progress=True)
    drawn = capsys.readouterr().err
    assert "instances" in drawn and "3/3" in drawn and "skipped=2" in drawn and "failed=0" in drawn


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_an_option_explain_does_not_take_is_refused_before_any_call(service, tmp_path, kind):
    _, address = service
    out = tmp_path / "results.jsonl"
    with pytest.raises(TypeError, match="explain_dataset.* gridd"):
        dataset(address, kind, out, 1, gridd=(3, 3))
    assert not out.exists()
