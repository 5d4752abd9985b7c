"""Audits through the service: correctness capture, modality influence, F_syn of the explanation and stability,
on the streaming call, the SDK, the dataset runner (splits) and the job API, against real servers; every number is
checked against the library functions run on the same synthetic game in-process."""

import numpy as np
import pytest

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import ExplainerClient
from multishap.client.errors import ExplainerError
from multishap.client.explanation import Explanation
from multishap.service.audit import modality_influence, stability
from multishap.service.audit.answers import is_correct, normalise_answer
from multishap.service.math.attributions import multishap_scores
from multishap.service.math.faithfulness import synergistic_faithfulness
from multishap.service.math.games import make_game
from multishap.service.rpc.config import Limits
from servers import TEXT, adapters, explainer

PARAMS = {"family": "mixed", "seed": "1"}
GRID = (2, 2)
TOKENS = len(TEXT.split())
CALL = dict(target="syn", grid=GRID, budget=400, parameters=PARAMS)


@pytest.fixture(scope="module")
def client():
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}) as (e, _, _):
        with ExplainerClient(e.address, timeout=60) as c:
            yield c


def game():
    return make_game("mixed", GRID[0] * GRID[1], TOKENS, 1)


@pytest.mark.parametrize("answer, truth, correct", [
    ("The cat.", "cat", True), ("  A  Cat ", "cat", True), ("cats", "cat", False), ("", "", False),
    ("an apple", "apple", True), ("“Cat”", "cat", True),
])
def test_answers_are_judged_after_normalising(answer, truth, correct):
    assert is_correct(answer, truth) is correct


def test_normalising_keeps_inner_punctuation_and_drops_one_article():
    assert normalise_answer("The  a-frame!") == "a-frame"


def test_the_models_answer_is_judged_against_the_ground_truth(client):
    right = client.explain(png(), TEXT, **{**CALL, "parameters": {**PARAMS, "answer": "cat"}}, ground_truth="Cat.")
    wrong = client.explain(png(), TEXT, **{**CALL, "parameters": {**PARAMS, "answer": "dog"}}, ground_truth="cat")
    assert right.answer.answer == "cat" and right.answer.judged and right.answer.correct
    assert wrong.answer.answer == "dog" and wrong.answer.judged and not wrong.answer.correct
    assert np.array_equal(right.phi, client.explain(png(), TEXT, **CALL).phi)  # the check changes no score


def test_candidates_are_chosen_among_and_scored(client):
    exp = client.explain(png(), TEXT, **{**CALL, "parameters": {**PARAMS, "answer": "dog"}},
                         candidates=["cat", "dog", "bird"], ground_truth="cat")
    assert exp.answer.answer == "dog" and exp.answer.scores == (0.0, 1.0, 0.0) and not exp.answer.correct
    assert exp.answer.candidates == ("cat", "dog", "bird") and "3 candidates" in exp.answer.how


def test_a_tie_among_the_candidates_is_no_answer_and_is_not_judged(client):
    exp = client.explain(png(), TEXT, **{**CALL, "parameters": {**PARAMS, "answer": "cat"}},
                         candidates=["dog", "bird"], ground_truth="dog")
    assert exp.answer.answer == "" and not exp.answer.judged and not exp.answer.correct
    assert "no answer" in exp.answer.error and exp.answer.scores == (0.0, 0.0)


def test_a_target_that_cannot_answer_leaves_the_reason_and_the_explanation(client):
    exp = client.explain(png(), TEXT, **CALL, ground_truth="cat")
    assert exp.answer.error and "cannot answer" in exp.answer.error and not exp.answer.judged
    assert exp.metrics.total > 0


def test_no_check_no_answer_and_a_dry_run_takes_no_audit_part(client):
    assert client.explain(png(), TEXT, **CALL).answer is None
    for part in (dict(ground_truth="cat"), dict(influence_budget=64), dict(faithfulness=True)):
        with pytest.raises(ExplainerError) as err:
            client.explain(png(), TEXT, **CALL, **part, dry_run=True)
        assert err.value.code == "INVALID_ARGUMENT" and "dry run" in str(err.value)


def test_modality_influence_equals_the_library_on_the_same_game(client):
    exp = client.explain(png(), TEXT, **CALL, influence_budget=4096, seed=3)
    want = modality_influence(game(), GRID[0] * GRID[1], TOKENS, budget=4096, seed=3)
    got = exp.influence
    assert got.exact and got.evaluations == want.evaluations
    for name in ("patch_shapley_with_text", "patch_shapley_without_text", "token_shapley_with_image",
                 "token_shapley_without_image"):
        assert np.allclose(getattr(got, name), getattr(want, name), rtol=0, atol=1e-12), name
    assert (got.image_on_text, got.text_on_image, got.redundancy_flag) == pytest.approx(
        (want.image_on_text, want.text_on_image, want.redundancy_flag), abs=1e-12)


def test_faithfulness_of_the_explanation_equals_the_library_on_its_scores(client):
    exp = client.explain(png(), TEXT, **CALL, faithfulness=True)
    a, b = multishap_scores(exp.phi)
    want = synergistic_faithfulness(game(), GRID[0] * GRID[1], TOKENS, a, b, steps=10, eps=0.05)
    assert exp.faithfulness.f_syn == pytest.approx(want.f_syn, abs=1e-12)
    assert np.allclose(exp.faithfulness.curve_ins, want.curve_ins) and exp.faithfulness.explainer == "multishap"


def test_the_audited_explanation_round_trips_through_json_and_proto(client):
    exp = client.explain(png(), TEXT, **{**CALL, "parameters": {**PARAMS, "answer": "cat"}}, ground_truth="cat",
                         influence_budget=256, faithfulness=True)
    again = Explanation.from_json(exp.to_json())
    assert again.answer == exp.answer and again.faithfulness.f_syn == exp.faithfulness.f_syn
    assert np.array_equal(again.influence.token_shapley_with_image, exp.influence.token_shapley_with_image)
    msg = exp.to_proto()
    assert msg.answer.correct and msg.influence.evaluations == exp.influence.evaluations
    assert msg.faithfulness.f_syn == exp.faithfulness.f_syn


def test_stability_through_the_sdk_equals_the_library_with_the_same_explanations(client):
    image = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(__import__("io").BytesIO(png())))
    call = dict(grid=GRID, budget=200, parameters=PARAMS, method="kernel")
    got = client.stability(image, TEXT, target="syn", perturbations=["seed", "noise"], repeats=2, seed=5, **call)

    def explain_fn(img, seed):
        exp = client.explain(img, TEXT, target="syn", seed=seed, **call)
        return exp.phi, exp.stderr

    want = stability(explain_fn, perturbations=["seed", "noise"], repeats=2, seed=5, image=image)
    assert got == want and set(got.per_perturbation) == {"seed", "noise"}


def test_stability_takes_only_a_reference_of_the_same_instance_seed_and_grid(client):
    image = np.zeros((32, 32, 3), np.uint8) + 100
    reference = client.explain(image, TEXT, **CALL, seed=2)
    same = dict(target="syn", reference=reference, grid=GRID, parameters=PARAMS)
    with pytest.raises(ValueError, match="seed"):
        client.stability(image, TEXT, **same, seed=3)
    with pytest.raises(ValueError, match="image"):
        client.stability(image + 1, TEXT, **same, seed=2)
    with pytest.raises(ValueError, match="text"):
        client.stability(image, "a dog", **same, seed=2)
    with pytest.raises(ValueError, match="grid"):
        client.stability(image, TEXT, **{**same, "grid": (3, 3)}, seed=2)
    with pytest.raises(TypeError, match="faithfulness"):
        client.stability(image, TEXT, target="syn", faithfulness=True)


@pytest.mark.parametrize("options, code, words", [
    (dict(candidates=[f"c{k}" for k in range(65)]), "RESOURCE_EXHAUSTED", "max_candidates"),
    (dict(candidates=["cat", "cat"]), "INVALID_ARGUMENT", "candidates 0 and 1"),
    (dict(candidates=["cat", "  "]), "INVALID_ARGUMENT", "blank"),
    (dict(ground_truth="x" * 5000), "RESOURCE_EXHAUSTED", "max_text_chars"),
    (dict(influence_budget=5), "INVALID_ARGUMENT", "influence_budget"),
    (dict(ground_truth="   "), "INVALID_ARGUMENT", "blank"),
    (dict(ground_truth="c\x00at"), "INVALID_ARGUMENT", "control or formatting"),
    (dict(candidates=["Cat", "cat"]), "INVALID_ARGUMENT", "same answer once normalised"),
    (dict(candidates=["\u200b"]), "INVALID_ARGUMENT", "control or formatting"),
    (dict(influence_budget=10**9), "RESOURCE_EXHAUSTED", "max_budget"),
])
def test_audit_fields_are_refused_before_any_work(options, code, words):
    backend = SyntheticBackend()
    with adapters(backend) as (a,), explainer({"syn": [a.address]}, Limits()) as (e, _, servicer):
        with ExplainerClient(e.address, timeout=30) as c:
            with pytest.raises(ExplainerError) as err:
                c.explain(png(), TEXT, **CALL, **options)
    assert err.value.code == code and words in str(err.value)


def test_candidates_given_as_one_string_are_refused_in_the_sdk(client):
    with pytest.raises(TypeError, match="list"):
        client.explain(png(), TEXT, **CALL, candidates="cat")


def dataset(roles=("true", "foil")):
    records = []
    for k in range(6):
        role = roles[k % len(roles)]
        answer = "cat" if k % 3 else "dog"
        records.append({"id": f"i{k}", "image": png(seed=k), "text": TEXT, "role": role, "ground_truth": "cat",
                        "parameters": {"family": "mixed", "seed": str(k), "answer": answer}})
    return records


def test_a_dataset_report_splits_by_correctness_and_role(client, tmp_path):
    report = client.explain_dataset(dataset(), target="syn", out=tmp_path / "r.jsonl", grid=GRID, budget=200,
                                    faithfulness=True, progress=False)
    by = {s.name: s for s in report.splits}
    assert [s.name for s in report.splits] == ["all", "correct", "incorrect", "true", "foil"]
    assert by["all"].count == 6 and by["correct"].count == 4 and by["incorrect"].count == 2
    assert by["true"].count == 3 and by["foil"].count == 3
    ratios = {r["id"]: r["synergy_ratio"] for r in report.rows}
    assert by["correct"].msr == pytest.approx(np.mean([ratios[f"i{k}"] for k in (1, 2, 4, 5)]))
    assert by["all"].msr == pytest.approx(report.msr)
    assert by["all"].f_syn_count == 6 and by["all"].msr_ci[0] <= by["all"].msr <= by["all"].msr_ci[1]
    assert {r["id"]: r["correct"] for r in report.rows} == {f"i{k}": bool(k % 3) for k in range(6)}
    assert {r["id"]: r["role"] for r in report.rows}["i1"] == "foil"


def test_a_record_with_an_unknown_role_fails_alone(client, tmp_path):
    records = dataset()[:2]
    records[1]["role"] = "maybe"
    report = client.explain_dataset(records, target="syn", out=tmp_path / "r.jsonl", grid=GRID, budget=200,
                                    progress=False)
    assert [r["id"] for r in report.rows] == ["i0"] and "role" in report.failed[0]["error"]


def test_a_dataset_job_carries_answers_and_faithfulness(client):
    job = client.submit_dataset(dataset()[:3], target="syn", grid=GRID, budget=200, faithfulness=True)
    rows = list(job.watch())
    explanations = [r.explanation for r in rows if r.explanation is not None]
    assert len(explanations) == 3
    assert sorted(e.answer.correct for e in explanations) == [False, True, True]
    assert all(e.faithfulness is not None for e in explanations)
    assert sorted(e.role for e in explanations) == ["foil", "true", "true"]
    by = {s.name: s.count for s in job.result().splits}
    assert by == {"all": 3, "correct": 2, "incorrect": 1, "true": 2, "foil": 1}



def test_the_cli_explains_with_every_audit_part_and_writes_the_html_report(client, tmp_path, capsys):
    from multishap.client.cli import main as cli

    image = tmp_path / "photo.png"
    image.write_bytes(png())
    out = tmp_path / "out"
    assert cli(["explain", "--address", client.address, "--target", "syn", "--image", str(image), "--text", TEXT,
                "--grid", "2x2", "--budget", "300", "--param", "family=mixed", "--param", "seed=1",
                "--param", "answer=cat", "--candidate", "cat", "--candidate", "dog", "--ground-truth", "cat",
                "--role", "true", "--influence-budget", "256", "--faithfulness", "--stability", "seed,jpeg",
                "--stability-repeats", "1", "--html", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    [saved] = out.glob("photo-*-explanation.json")
    exp = Explanation.from_json(saved.read_text())
    assert exp.role == "true" and exp.answer.correct and exp.influence.evaluations > 0
    assert exp.faithfulness is not None and set(exp.stability.per_perturbation) == {"seed", "jpeg"}
    assert "model answer: 'cat' (argmax over 2 candidates), correct against 'cat'" in printed
    assert "modality influence: image on text" in printed and "stability (rank correlation" in printed
    [page] = out.glob("photo-*-report.html")
    assert f"wrote {page}" in printed and "<html" in page.read_text().lower()


def test_the_cli_dataset_run_prints_the_splits(client, tmp_path, capsys):
    import json as json_

    from multishap.client.cli import main as cli

    lines = []
    for k, record in enumerate(dataset()):
        path = tmp_path / f"{k}.png"
        path.write_bytes(record["image"])
        lines.append(json_.dumps({**record, "image": path.name}))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    assert cli(["explain-dataset", str(manifest), "--address", client.address, "--target", "syn", "--grid", "2x2",
                "--budget", "200", "--faithfulness", "--out", str(tmp_path / "results.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "| split | instances | MSR [95% CI] | SDR [95% CI] | F_syn [95% CI] |" in printed
    assert "| correct | 4 |" in printed and "| foil | 3 |" in printed


def test_a_request_without_audit_parts_keeps_the_row_key_it_had_before_audits_existed():
    """Rows finished before this version are reused, not paid for again: the keys below are those the previous
    version computed for the same records."""
    from multishap.client.dataset import row_key

    record = {"id": "a", "image": png(), "text": TEXT, "answer": "cat", "grid": [2, 3],
              "parameters": {"family": "mixed"}}
    assert row_key(record, "syn", {}) == "db65a7c02ca0c1101c396feaef4cec97"
    options = {"budget": 300, "seed": 4, "method": "kernel", "image_baseline": "blur"}
    assert row_key(record, "syn", options) == "50603889a9512af6b3638aeba7799793"
    assert row_key({**record, "ground_truth": "cat"}, "syn", {}) != row_key(record, "syn", {})
    assert row_key(record, "syn", {"faithfulness": True}) != row_key(record, "syn", {})


def comparison_records():
    records = dataset()[:5]
    for k, record in enumerate(records):
        record["explanations"] = {"uniform": {"patch_scores": [1.0] * 4, "token_scores": [1.0] * TOKENS}}
    return records


def test_explainers_are_ranked_by_f_syn_as_the_library_ranks_the_same_scores(client):
    from multishap.service.audit import compare_explainers

    report = client.compare_explainers(comparison_records(), target="syn", explainers=["multishap", "random"],
                                       grid=GRID, budget=200, steps=5)
    assert report.explainers == ("multishap", "random", "uniform") and not report.failed
    assert len(report.rows) == 15
    one = comparison_records()[0]
    direct = client.faithfulness(one["image"], TEXT, target="syn", grid=GRID, budget=200, steps=5,
                                 parameters=one["parameters"], explainer="random")
    assert [r["f_syn"] for r in report.rows if r["instance"] == "i0" and r["explainer"] == "random"] == [direct.f_syn]
    want = compare_explainers([(r["instance"], r["explainer"], r["f_syn"]) for r in report.rows])
    assert report.comparison == want and report.comparison.instances == 5
    assert "| multishap |" in report.table() and "Bonferroni p" in report.table()


def test_the_async_client_compares_the_same(client):
    import asyncio

    from multishap.client import AsyncExplainerClient

    async def run():
        async with AsyncExplainerClient(client.address, timeout=60) as aio:
            return await aio.compare_explainers(comparison_records()[:3], target="syn", explainers=["random"],
                                                grid=GRID, steps=4, concurrency=2)

    got = asyncio.run(run())
    want = client.compare_explainers(comparison_records()[:3], target="syn", explainers=["random"], grid=GRID,
                                     steps=4)
    assert got.rows == want.rows and got.comparison == want.comparison


def test_a_comparison_refuses_unknown_explainers_and_options_before_any_call(client):
    with pytest.raises(ValueError, match="unknown built-in explainer"):
        client.compare_explainers(dataset(), target="syn", explainers=["gradcam"])
    with pytest.raises(TypeError, match="influence_budget"):
        client.compare_explainers(dataset(), target="syn", influence_budget=10)


def test_the_cli_compares_explainers_over_a_manifest(client, tmp_path, capsys):
    import json as json_

    from multishap.client.cli import main as cli

    lines = []
    for k, record in enumerate(comparison_records()[:4]):
        path = tmp_path / f"{k}.png"
        path.write_bytes(record["image"])
        lines.append(json_.dumps({**record, "image": path.name}))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    assert cli(["compare", str(manifest), "--address", client.address, "--target", "syn", "--grid", "2x2",
                "--budget", "200", "--steps", "4", "--explainer", "multishap", "--explainer", "random"]) == 0
    printed = capsys.readouterr().out
    assert "over 4 instances" in printed and "| uniform |" in printed and "| multishap | random |" in printed


def test_a_jobs_rows_make_a_dataset_report_page_with_its_splits(client, tmp_path, capsys):
    from multishap.client.cli import main as cli

    job = client.submit_dataset(dataset(), target="syn", grid=GRID, budget=200, faithfulness=True)
    job.result()
    rows = tmp_path / "rows.jsonl"
    assert cli(["jobs", "get", job.id, "--address", client.address, "--out", str(rows)]) == 0
    assert cli(["report", str(rows)]) == 0
    page = rows.with_suffix(".html")
    assert str(page) in capsys.readouterr().out
    html = page.read_text()
    assert "MSR [95% CI]" in html and ">incorrect<" in html and ">foil<" in html


def test_an_empty_ground_truth_asks_nothing_and_keeps_the_row_key():
    from multishap.client.dataset import row_key
    from multishap.client.requests import explain_call

    assert not explain_call(png(), TEXT, target="syn", ground_truth="", candidates=[]).request.HasField("check")
    record = {"id": "a", "image": png(), "text": TEXT}
    assert row_key({**record, "ground_truth": ""}, "syn", {}) == row_key(record, "syn", {})


def test_a_results_file_with_two_keys_per_instance_reports_each_instance_once(client, tmp_path):
    from multishap.client.dataset import results_report

    out = tmp_path / "r.jsonl"
    records = dataset()[:2]
    client.explain_dataset(records, target="syn", out=out, grid=GRID, budget=200, progress=False)
    client.explain_dataset(records, target="syn", out=out, grid=GRID, budget=300, progress=False)
    lines = [__import__("json").loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4
    report = results_report(lines + [{"id": "i1", "key": None, "error": "later failure"}])
    assert sorted(r["id"] for r in report.rows) == ["i0", "i1"] and report.failed == []
    latest = {line["id"]: line["explanation"]["evaluations"] for line in lines}  # the second run's lines come last
    assert {r["id"]: r["evaluations"] for r in report.rows} == latest
    assert report.splits[0].count == 2


def test_a_paid_answer_counts_in_the_explanations_usage_and_cost(tmp_path):
    from openai_env import TEXT as SIM_TEXT, TARGET, instance, openai_adapter, options, simulator

    inst = instance()
    with simulator(inst) as sim, openai_adapter(options(sim, tmp_path / "c.sqlite")) as (running, _, _):
        with explainer({"api": [running.address]}) as (e, _, _), ExplainerClient(e.address, timeout=60) as c:
            call = dict(target="api", answer=TARGET, grid=(2, 2), budget=60, method="kernel")
            plain = c.explain(inst.image, SIM_TEXT, **call)
            checked = c.explain(inst.image, SIM_TEXT, **call, ground_truth="yes")
    assert checked.answer.how.startswith("greedy") and checked.answer.judged
    assert checked.cost_unit == "requests" and checked.cost == plain.cost + 1
    assert (checked.usage.requests + checked.usage.cache_hits) == (plain.usage.requests + plain.usage.cache_hits) + 1
    assert np.array_equal(checked.phi, plain.phi)


class CountingBackend(SyntheticBackend):
    """The synthetic game, counting the coalitions it scores."""

    def __init__(self) -> None:
        super().__init__()
        self.scored = 0

    def forward(self, instance, masks):
        self.scored += len(masks)
        return super().forward(instance, masks)


def test_an_influence_budget_too_small_for_the_game_is_refused_before_any_scoring():
    backend = CountingBackend()
    with adapters(backend) as (a,), explainer({"syn": [a.address]}) as (e, _, _):
        with ExplainerClient(e.address, timeout=30) as c:
            with pytest.raises(ExplainerError) as err:
                c.explain(png(), TEXT, **{**CALL, "parameters": {**PARAMS, "answer": "cat"}}, ground_truth="cat",
                          influence_budget=16)
            assert backend.scored == 0
            assert c.explain(png(), TEXT, **CALL, influence_budget=40).influence.evaluations > 0
    assert err.value.code == "INVALID_ARGUMENT" and "needs at least 40 coalitions" in str(err.value)
