"""What users see of a result: provenance and JSON, output file stems, heatmaps, notebook views and data frames."""

import base64
import hashlib
import json
import re
import sys

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

import multishap
from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client.explanation import Explanation, FaithfulnessReport, Metrics
from multishap.client.plot import OVERLAY_ALPHA
from multishap.client.provenance import output_stem
from multishap.client.report import save, summary
from multishap.service.math.metrics import InstanceMetrics, instance_metrics
from multishap.service.rpc.convert import matrix_to_proto, metrics_to_proto
from multishap.v1 import common_pb2, explainer_pb2
from servers import adapters, explainer

TOKENS = ["a", "cat", "on", "a"]
GRID = (2, 3)


def phi_matrix() -> np.ndarray:
    """Phi on a 2x3 grid: the strongest synergy is patch 5 (r1c2) with 'cat', the strongest suppression patch 1
    (r0c1) with the second 'a', and patch 0 has no interaction with any token."""
    phi = np.linspace(-0.2, 0.3, 24).reshape(6, 4)
    phi[0] = 0.0
    phi[5, 1], phi[1, 3] = 2.0, -1.5
    return phi


def explain_request(text: str = "a cat on a", answer: str = "cat", image: bytes = None) -> explainer_pb2.ExplainRequest:
    instance = common_pb2.Instance(
        image=png() if image is None else image, text=text, target=answer, grid=common_pb2.Grid(rows=2, cols=3),
        parameters={"family": "mixed", "seed": "4"},
        masking=common_pb2.MaskingOptions(image_baseline=common_pb2.IMAGE_BASELINE_BLUR, blur_radius=12.0,
                                          text_mask="pad"))
    return explainer_pb2.ExplainRequest(target="syn", instance=instance, method="exact", seed=3)


def explanation_message(phi: np.ndarray = None, tokens=TOKENS) -> explainer_pb2.Explanation:
    phi = phi_matrix() if phi is None else phi
    return explainer_pb2.Explanation(
        phi=matrix_to_proto(phi), stderr=matrix_to_proto(np.abs(phi) / 10), tokens=tokens,
        grid=common_pb2.Grid(rows=GRID[0], cols=GRID[1]), metrics=metrics_to_proto(instance_metrics(phi)),
        v_full=1.5, v_empty=0.25, evaluations=1024, seconds=0.5, seed=3, method="exact", index="SII", budget=0,
        target=explainer_pb2.TargetInfo(name="syn", model_id="synthetic-v1", score_semantics="game value",
                                        reachable=True))


def explanation(**kw) -> Explanation:
    return Explanation.from_proto(explanation_message(), request=explain_request(**kw), image_name="cat.png")


# The explanation JSON as written before provenance was recorded (no schema_version, text, masking or image).
OLD_JSON = json.dumps({
    "phi": phi_matrix().tolist(), "stderr": (np.abs(phi_matrix()) / 10).tolist(), "tokens": TOKENS, "grid": [2, 3],
    "metrics": {"total": 7.5, "synergy": 4.5, "suppression": 3.0, "synergy_ratio": 0.6}, "shapley": None,
    "v_full": 1.5, "v_empty": 0.25, "v_image_only": 0.5, "v_text_only": 0.5, "modality_interaction": 0.75,
    "evaluations": 1024, "seconds": 0.5, "seed": 3, "method": "exact", "index": "SII", "budget": 0,
    "target": {"name": "syn", "addresses": [], "model_id": "synthetic-v1", "score_semantics": "game value",
               "reachable": True},
    "usage": {"requests": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0,
              "retries": 0, "bounded": 0},
    "dry_run": False,
})


def texts(fig) -> str:
    return "\n".join(t.get_text() for t in fig.texts)


def panels(fig):
    """The heatmap axes (those with images), in panel order."""
    return [ax for ax in fig.axes if ax.images]


def test_from_proto_records_the_request():
    request = explain_request()
    exp = Explanation.from_proto(explanation_message(), request=request, image_name="cat.png")
    p = exp.provenance
    assert (p.text, p.answer, p.parameters, p.image_name) == ("a cat on a", "cat", {"family": "mixed", "seed": "4"},
                                                              "cat.png")
    assert (p.masking.image_baseline, p.masking.blur_radius, p.masking.text_mask) == ("blur", 12.0, "pad")
    assert p.image_sha256 == hashlib.sha256(request.instance.image).hexdigest()
    assert p.tool_version == multishap.__version__
    assert Metrics is InstanceMetrics and isinstance(exp.metrics, InstanceMetrics)
    assert exp.image.shape == (24, 32, 3)  # decoded from the request's bytes when no image is passed
    assert Explanation.from_proto(explanation_message(), request=request).provenance.image_name is None


def test_json_round_trips_exactly_with_provenance():
    exp = explanation()
    text = exp.to_json()
    data = json.loads(text)
    assert data["schema_version"] == 3 and data["provenance"]["text"] == "a cat on a"
    assert data["provenance"]["masking"] == {"image_baseline": "blur", "blur_radius": 12.0, "text_mask": "pad"}
    back = Explanation.from_json(text)
    assert back.to_json() == text and back.provenance == exp.provenance and back.image is None
    assert np.array_equal(back.phi, exp.phi) and back.metrics == exp.metrics


def test_old_format_json_reads_with_defaults():
    old = Explanation.from_json(OLD_JSON)
    assert old.provenance.text is None and old.provenance.image_sha256 is None and old.provenance.parameters == {}
    assert old.provenance.masking.image_baseline == "default"
    assert old.metrics == InstanceMetrics(7.5, 4.5, 3.0, 0.6) and old.tokens == TOKENS
    assert json.loads(old.to_json())["schema_version"] == 3
    fig = old.plot()
    assert "text and answer not recorded" in fig.texts[0].get_text()
    assert "no image: pass plot(image=...)" in texts(fig)


def test_newer_schema_is_refused():
    data = json.loads(explanation().to_json())
    data["schema_version"] = 4
    with pytest.raises(ValueError, match="schema_version 4.*upgrade multishap"):
        Explanation.from_dict(data)


def test_output_stem_is_unique_per_instance(tmp_path):
    first, again, other_text = explanation(), explanation(), explanation(text="a dog on a")
    other_answer, other_image = explanation(answer="dog"), explanation(image=png(seed=1))
    assert output_stem(first) == output_stem(again)
    stems = {output_stem(e) for e in (first, other_text, other_answer, other_image)}
    assert len(stems) == 4 and all(re.fullmatch(r"cat-[0-9a-f]{10}", s) for s in stems)
    old = Explanation.from_json(OLD_JSON)
    assert re.fullmatch(r"image-[0-9a-f]{10}", output_stem(old))
    weird = Explanation.from_proto(explanation_message(), request=explain_request(), image_name="my photo (1).JPG")
    assert output_stem(weird).startswith("my_photo_1-")
    paths = [save(e, tmp_path) for e in (first, other_text)]
    assert len({p for pair in paths for p in pair}) == 4 and all(p.exists() for pair in paths for p in pair)
    assert Explanation.from_json(paths[1][0].read_text()).provenance.text == "a dog on a"


def test_heatmap_names_panels_patches_and_scale():
    exp = explanation()
    fig = exp.plot()
    maps = panels(fig)
    assert [ax.get_title() for ax in maps] == ["'a' #1", "'cat'", "'on'", "'a' #2", "average over all 4 tokens"]
    for ax in maps:
        assert [t.get_text() for t in ax.get_xticklabels()] == ["c0", "c1", "c2"]
        assert [t.get_text() for t in ax.get_yticklabels()] == ["r0", "r1"]
        assert len(ax.collections) == 2  # the patch grid's vertical and horizontal lines
    title = fig.texts[0].get_text()
    assert "'a cat on a'" in title and "answer 'cat'" in title and "target syn" in title
    assert "colour scale: shared" in title
    bars = [ax for ax in fig.axes if not ax.images]
    assert len(bars) == 1 and "shared scale ±2" in bars[0].get_ylabel()
    assert "no image" not in texts(fig) and "showing" not in texts(fig)


def test_summary_names_patches_as_the_ticks_do():
    text = summary(explanation())
    assert "strongest synergy:     patch r1c2 × 'cat' (Φ = +2)" in text
    assert "strongest suppression: patch r0c1 × 'a' #2 (Φ = -1.5)" in text
    assert "text 'a cat on a', answer 'cat', image cat.png" in text


def test_overlay_keeps_the_photo_and_grows_with_phi():
    exp = explanation()
    cat = panels(exp.plot())[1]
    photo, overlay = cat.images
    assert photo.get_array().shape == (24, 32)  # the photo drawn whole (in grey), under the overlay
    alpha = overlay.get_array()[..., 3]
    assert alpha[0, 0] == 0.0  # patch r0c0: Φ = 0, the photo shows untinted
    assert alpha[1, 2] == pytest.approx(OVERLAY_ALPHA)  # patch r1c2: the largest |Φ|
    assert 0.0 < alpha[0, 1] < alpha[1, 2]


def test_per_token_scale_and_truncated_tokens_are_said():
    fig = explanation().plot(max_tokens=2, scale="per-token")
    assert [ax.get_title() for ax in panels(fig)] == ["'a' #1", "'cat'", "average over all 4 tokens"]
    bars = [ax for ax in fig.axes if not ax.images]
    assert len(bars) == 3 and all(ax.get_ylabel() == "Φ, this panel's scale" for ax in bars)
    assert "colour scale: per-token" in fig.texts[0].get_text()
    assert "showing 2 of 4 tokens; pass max_tokens=4 to see all" in texts(fig)
    with pytest.raises(ValueError, match="scale must be one of shared, per-token"):
        explanation().plot(scale="log")


def test_plot_takes_an_image_for_a_loaded_explanation():
    loaded = Explanation.from_json(explanation().to_json())
    bare = loaded.plot()
    assert all(len(ax.images) == 1 for ax in panels(bare)) and "(cat.png)" in texts(bare)
    drawn = loaded.plot(image=png())
    assert all(len(ax.images) == 2 for ax in panels(drawn)) and "no image" not in texts(drawn)


def test_plot_leaves_the_backend_and_pyplot_alone():
    before = matplotlib.get_backend()
    plt.switch_backend("svg")
    try:
        open_figures = plt.get_fignums()
        explanation().plot()
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == open_figures
    finally:
        plt.switch_backend(before)


def test_repr_and_html():
    exp = explanation()
    line = repr(exp)
    assert "\n" not in line and len(line) < 250 and "[" not in line
    assert "'a cat on a' → 'cat'" in line and "synergy ratio" in line
    html = exp._repr_html_()
    assert "synergy ratio" in html and f"{exp.metrics.synergy_ratio:.3f}" in html
    assert "patch r1c2 × &#x27;cat&#x27;" in html and "patch r0c1 × &#x27;a&#x27; #2" in html
    encoded = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    assert base64.b64decode(encoded).startswith(b"\x89PNG")


def test_html_escapes_the_caller_text():
    html = explanation(text="<script>alert(1)</script>")._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_dataframe_is_long_format():
    exp = explanation()
    frame = exp.to_dataframe()
    assert list(frame.columns) == ["row", "col", "patch", "token_index", "token", "phi", "stderr"]
    assert len(frame) == 6 * 4
    hit = frame[(frame.patch == "r1c2") & (frame.token_index == 1)]
    assert len(hit) == 1 and hit.iloc[0].token == "cat" and hit.iloc[0].phi == 2.0
    assert (hit.iloc[0].row, hit.iloc[0].col) == (1, 2) and hit.iloc[0].stderr == pytest.approx(0.2)


def test_dataframe_without_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=re.escape("pip install 'multishap[notebook]'")):
        explanation().to_dataframe()


def faithfulness_message(macro: bool = True) -> explainer_pb2.FaithfulnessResult:
    alphas = np.linspace(0, 1, 6)
    return explainer_pb2.FaithfulnessResult(
        f_syn=0.4, f_ins=0.5, f_del=0.3, f_syn_unclipped=0.41, f_syn_raw=0.2, alphas=alphas.tolist(),
        curve_ins=(alphas * 0.5).tolist(), curve_del=(alphas * 0.3).tolist(),
        visual=explainer_pb2.UnimodalResult(insertion=0.6, deletion=0.2, srg=0.4),
        text=explainer_pb2.UnimodalResult(insertion=0.5, deletion=0.4, srg=0.1),
        macro_per_step=(alphas * 0.4).tolist() if macro else [], macro_auc=0.2 if macro else 0.0, evaluations=300,
        patch_scores=[0.1] * 6, token_scores=[0.2] * 4, tokens=TOKENS, seconds=0.3,
        target=explainer_pb2.TargetInfo(name="syn", model_id="synthetic-v1"))


def faithfulness_request(**kw) -> explainer_pb2.FaithfulnessRequest:
    return explainer_pb2.FaithfulnessRequest(target="syn", instance=explain_request().instance, **kw)


def test_faithfulness_report_round_trip_and_views():
    report = FaithfulnessReport.from_proto(faithfulness_message(), request=faithfulness_request(explainer="Random"),
                                           image_name="cat.png")
    assert report.explainer == "random" and report.provenance.text == "a cat on a" and report.grid == (2, 3)
    text = report.to_json()
    assert json.loads(text)["schema_version"] == 3
    back = FaithfulnessReport.from_json(text)
    assert back.to_json() == text and np.array_equal(back.macro_per_step, report.macro_per_step)
    assert output_stem(back) == output_stem(report)
    line = repr(report)
    assert "\n" not in line and "F_syn 0.400" in line and "'random'" in line and "5 steps" in line
    html = report._repr_html_()
    assert "F_syn" in html and "0.4000" in html and "data:image/png;base64," in html
    frame = report.to_dataframe()
    assert list(frame.columns) == ["alpha", "insertion", "deletion", "macro_game"] and len(frame) == 6
    fig = report.plot()
    ax = fig.axes[0]
    legend = [text.get_text().split()[0] for text in ax.get_legend().get_texts()]
    assert legend == ["insertion", "deletion", "macro-game"]
    assert ax.get_xlabel().startswith("α") and "F_syn 0.400 of random scores on target syn" in ax.get_title()
    assert "visual insertion 0.600" in texts(fig)


def test_faithfulness_without_macro_game_and_with_given_scores():
    report = FaithfulnessReport.from_proto(faithfulness_message(macro=False),
                                           request=faithfulness_request(patch_scores=[0.1] * 6, token_scores=[0.2] * 4))
    assert report.explainer == "given" and report.macro_per_step is None and report.macro_auc is None
    assert list(report.to_dataframe().columns) == ["alpha", "insertion", "deletion"]
    assert len(report.plot().axes[0].get_legend().get_texts()) == 2
    assert FaithfulnessReport.from_json(report.to_json()).to_json() == report.to_json()


def test_results_of_a_real_explainer_carry_their_request():
    request = explain_request()
    request.method, request.budget = "auto", 1500
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}) as (_, stub, _):
        events = list(stub.Explain(request, timeout=60))
        faith_request = faithfulness_request(explainer="random", macro_game=True)
        results = list(stub.Faithfulness(faith_request, timeout=60))
    exp = Explanation.from_proto(events[-1].explanation, request=request, image_name="cat.png")
    assert exp.provenance.text == "a cat on a" and exp.tokens == TOKENS and exp.grid == (2, 3)
    assert Explanation.from_json(exp.to_json()).to_json() == exp.to_json()
    assert {ax.get_title() for ax in panels(exp.plot())} >= {"'a' #1", "'a' #2"}
    report = FaithfulnessReport.from_proto(results[-1].result, request=faith_request)
    assert report.target.name == "syn" and len(report.to_dataframe()) == len(report.alphas)
