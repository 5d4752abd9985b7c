"""The SDK and the CLI against a real explainer and synthetic adapter on loopback."""

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import AsyncExplainerClient, Explanation, ExplainerClient, ExplainerError
from multishap.client.cli import main as cli
from multishap.service.math.attributions import random_scores
from multishap.service.math.faithfulness import macro_game_sii, synergistic_faithfulness
from multishap.service.math.games import make_game
from multishap.service.rpc.config import Limits
from servers import TEXT, adapters, explainer

PARAMS = {"family": "mixed", "seed": "1"}


@pytest.fixture(scope="module")
def service():
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}, Limits(max_concurrent_explanations=16)) as (e, _, _):
        yield a, e


@pytest.fixture(scope="module")
def client(service):
    _, e = service
    with ExplainerClient(e.address, timeout=60) as c:
        yield c


def explain(client, image=None, **kw):
    kw.setdefault("budget", 2000)
    return client.explain(png() if image is None else image, TEXT, target="syn", grid=(3, 3), parameters=PARAMS, **kw)


def test_image_forms_give_the_same_phi(client, tmp_path):
    encoded = png()
    pil = Image.open(io.BytesIO(encoded))
    path = tmp_path / "img.png"
    path.write_bytes(encoded)
    results = [explain(client, image=img).phi for img in (encoded, pil, np.asarray(pil), str(path), path)]
    for phi in results[1:]:
        assert np.array_equal(results[0], phi)


def test_explanation_json_round_trip_and_plot(client):
    exp = explain(client)
    back = Explanation.from_json(exp.to_json())
    assert np.array_equal(back.phi, exp.phi) and np.array_equal(back.stderr, exp.stderr)
    assert back.tokens == exp.tokens == TEXT.split() and back.grid == (3, 3)
    assert back.metrics == exp.metrics and back.target == exp.target and back.evaluations == exp.evaluations
    fig = exp.plot()
    assert len(fig.axes) >= len(exp.tokens) + 1
    assert exp.metrics.synergy_ratio == pytest.approx(exp.metrics.synergy / exp.metrics.total)


def test_progress_callback_and_targets(client, service):
    a, _ = service
    seen = []
    explain(client, progress=seen.append, budget=3000)
    assert seen and seen[-1].evaluations <= 3000 and all(p.budget == 3000 for p in seen)
    [target] = client.targets()
    assert target.name == "syn" and target.addresses == [] and target.reachable  # addresses stay server-side


def test_errors_arrive_as_explainer_error(client):
    with pytest.raises(ExplainerError) as err:
        client.explain(png(), TEXT, target="nope", grid=(3, 3))
    assert err.value.code == "NOT_FOUND" and "unknown target 'nope'" in err.value.details
    with pytest.raises(ValueError, match="could not be decoded"):
        client.explain(b"junk", TEXT, target="syn")


def test_faithfulness_from_the_sdk(client):
    report = client.faithfulness(png(), TEXT, target="syn", grid=(3, 3), parameters=PARAMS, explainer="random",
                                 macro_game=True)
    a, b = random_scores(9, len(TEXT.split()), 0)
    game = make_game(PARAMS["family"], 9, len(TEXT.split()), int(PARAMS["seed"]))
    assert report.f_syn == synergistic_faithfulness(game, 9, len(TEXT.split()), a, b).f_syn
    assert report.macro_auc == macro_game_sii(game, 9, len(TEXT.split()), a, b, seed=0).auc
    assert len(report.alphas) == 11 and report.macro_per_step.shape == (11,)
    assert report.tokens == TEXT.split() and report.patch_scores.shape == (9,)


def test_async_client_matches_the_blocking_one(client, service):
    _, e = service

    async def run():
        async with AsyncExplainerClient(e.address, timeout=60) as ac:
            targets = await ac.targets()
            exp = await ac.explain(png(), TEXT, target="syn", grid=(3, 3), parameters=PARAMS, budget=2000)
            report = await ac.faithfulness(png(), TEXT, target="syn", grid=(3, 3), parameters=PARAMS,
                                           explainer="random", macro_game=True, chunks=3)
            return targets, exp, report

    targets, exp, report = asyncio.run(run())
    assert targets[0].name == "syn"
    assert np.array_equal(exp.phi, explain(client).phi)
    blocking = client.faithfulness(png(), TEXT, target="syn", grid=(3, 3), parameters=PARAMS, explainer="random",
                                   macro_game=True, chunks=3)
    assert report.f_syn == blocking.f_syn and np.array_equal(report.macro_per_step, blocking.macro_per_step)


def test_explain_dataset_resumes_without_redoing_finished_instances(client, service, tmp_path):
    a, _ = service
    out = tmp_path / "results.jsonl"
    records = [{"id": f"i{k}", "image": png(seed=k), "text": TEXT, "parameters": PARAMS, "grid": [3, 3]} for k in range(4)]
    first = client.explain_dataset(records[:3], target="syn", out=out, concurrency=2, budget=1500, progress=False)
    assert len(first.rows) == 3 and first.skipped == 0 and not first.failed
    passes = a.registry.get_sample_value("multishap_adapter_forward_passes_total")
    second = client.explain_dataset(records, target="syn", out=out, concurrency=2, budget=1500, progress=False)
    new = a.registry.get_sample_value("multishap_adapter_forward_passes_total") - passes
    assert second.skipped == 3 and len(second.rows) == 4
    assert new <= 1500
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == ["i0", "i1", "i2", "i3"]
    ratios = [r["synergy_ratio"] for r in second.rows]
    assert second.msr == pytest.approx(np.mean(ratios)) and second.sdr == pytest.approx(np.mean(np.array(ratios) > 0.5))


def test_cli_explain_targets_and_dataset(service, tmp_path, monkeypatch, capsys):
    a, e = service
    image = tmp_path / "photo.png"
    image.write_bytes(png())
    for command in ("EXPLAIN", "EXPLAIN_DATASET", "TARGETS"):
        monkeypatch.setenv(f"MULTISHAP_{command}_ADDRESS", e.address)
    for command in ("EXPLAIN", "EXPLAIN_DATASET"):
        monkeypatch.setenv(f"MULTISHAP_{command}_TARGET", "syn")
    code = cli(["explain", "--image", str(image), "--text", TEXT, "--grid", "3x3", "--budget", "1500",
                "--param", "family=mixed", "--param", "seed=1", "--out", str(tmp_path / "out")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "synergy ratio" in printed and "strongest synergy" in printed
    [json_file] = (tmp_path / "out").glob("photo-*-explanation.json")
    saved = Explanation.from_json(json_file.read_text())
    heatmap = json_file.with_name(json_file.name.replace("-explanation.json", "-heatmap.png"))
    assert saved.evaluations <= 1500 and heatmap.stat().st_size > 1000

    assert cli(["targets"]) == 0
    assert "syn\treachable" in capsys.readouterr().out

    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(json.dumps({"id": f"m{k}", "image": "photo.png", "text": TEXT}) for k in range(2)))
    results = tmp_path / "results.jsonl"
    args = ["explain-dataset", str(manifest), "--grid", "3x3", "--budget", "800", "--out", str(results)]
    assert cli(args) == 0
    assert "MSR" in capsys.readouterr().out
    assert cli(args) == 0
    assert "2 resumed" in capsys.readouterr().out

    assert cli(["explain", "--image", str(image), "--text", TEXT, "--target", "nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_on_the_real_model_and_writes_its_files(tmp_path, capsys):
    from multishap.client.demo import main as demo

    assert demo([str(tmp_path), "--grid", "2x2", "--budget", "300"]) == 0
    printed = capsys.readouterr().out
    assert "encoder passes" in printed and "Φ of 'cat'" in printed
    assert (tmp_path / "chelsea-heatmap.png").exists() and (tmp_path / "chelsea-explanation.json").exists()
