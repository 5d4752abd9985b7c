"""Known answers for the library-mode audit statistics (issue 16): modality influence on games with
known structure, bootstrap intervals of MSR/SDR, explainer comparison against scipy's Wilcoxon,
and explanation stability under perturbations and sampling stderr."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from multishap.service.audit import (
    bootstrap_dataset_metrics,
    compare_explainers,
    modality_influence,
    stability,
)
from multishap.service.audit.compare import wilcoxon_signed_rank
from multishap.service.audit.influence import agreement
from multishap.service.math.metrics import dataset_metrics
from multishap.service.math.validation import ArgumentError

M, N = 4, 3
PATCH_W = np.array([0.3, -1.1, 0.7, 2.0])
TOKEN_W = np.array([1.5, -0.4, 0.9])


def additive(masks: np.ndarray) -> np.ndarray:
    """v = f(image) + g(text), both nonlinear."""
    x = masks.astype(float)
    return (x[:, :M] @ PATCH_W) ** 2 + np.sin(x[:, M:] @ TOKEN_W)


def and_game(masks: np.ndarray) -> np.ndarray:
    """v = 1 iff patch 1 and token 2 are present; every other player is a dummy."""
    return (masks[:, 1] & masks[:, M + 2]).astype(float)


def redundant(masks: np.ndarray) -> np.ndarray:
    """v = 1 if any patch or any token is present."""
    return masks.any(axis=1).astype(float)


# --- modality influence -------------------------------------------------------------------------


def test_additive_game_has_no_influence_either_way() -> None:
    mi = modality_influence(additive, M, N)
    assert mi.exact
    assert mi.image_on_text == pytest.approx(0.0, abs=1e-9)
    assert mi.text_on_image == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(mi.patch_shapley_with_text, mi.patch_shapley_without_text, atol=1e-12)
    np.testing.assert_allclose(mi.token_shapley_with_image, mi.token_shapley_without_image, atol=1e-12)
    assert np.ptp(mi.patch_shapley_with_text) > 0.5  # the explanations themselves are not trivial
    assert not mi.redundancy_flag


def test_and_game_has_full_influence_on_the_partner() -> None:
    mi = modality_influence(and_game, M, N)
    assert mi.image_on_text == pytest.approx(1.0)
    assert mi.text_on_image == pytest.approx(1.0)
    np.testing.assert_allclose(mi.token_shapley_with_image, [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(mi.patch_shapley_with_text, [0.0, 1.0, 0.0, 0.0], atol=1e-12)
    assert not mi.token_shapley_without_image.any() and not mi.patch_shapley_without_text.any()
    assert not mi.redundancy_flag


def test_partial_dependence_lies_strictly_between() -> None:
    """An AND game on one token plus additive text evidence: the text explanation changes, but not completely."""
    mi = modality_influence(lambda x: 2 * and_game(x) + x[:, M:].astype(float) @ TOKEN_W, M, N)
    assert 0.0 < mi.image_on_text < 1.0
    assert mi.text_on_image == pytest.approx(1.0)


def test_redundant_game_is_flagged() -> None:
    mi = modality_influence(redundant, M, N)
    assert mi.redundancy_flag
    assert (mi.v_full, mi.v_empty, mi.v_image_only, mi.v_text_only) == (1.0, 0.0, 1.0, 1.0)


def test_redundancy_tolerance_is_relative_to_the_full_effect() -> None:
    near = lambda x: redundant(x) + 0.1 * x[:, M:].all(axis=1) * x[:, :M].all(axis=1)  # noqa: E731
    assert not modality_influence(near, M, N, tol=0.05).redundancy_flag
    assert modality_influence(near, M, N, tol=0.2).redundancy_flag


def test_agreement_definition() -> None:
    x = np.array([3.0, -1.0, 0.5, 2.0])
    assert agreement(x, 4 * x) == 1.0
    assert agreement(x, -x) == 0.0
    assert agreement(np.zeros(4), np.zeros(4)) == 1.0
    assert agreement(x, np.zeros(4)) == 0.0 and agreement(np.zeros(4), x) == 0.0
    assert agreement(np.array([2.0]), np.array([5.0])) == 1.0  # one player: the sign is what counts
    assert agreement(np.array([2.0]), np.array([-5.0])) == 0.0
    assert 0.0 < agreement(x, x[::-1]) < 1.0


def test_large_modality_is_sampled_deterministically() -> None:
    m, n = 14, 3
    w = np.linspace(-1.0, 2.0, m)
    game = lambda x: (x[:, :m] @ w) * (1 + x[:, m:].sum(axis=1))  # noqa: E731
    first = modality_influence(game, m, n, budget=4000, seed=3)
    again = modality_influence(game, m, n, budget=4000, seed=3)
    assert not first.exact
    assert first.evaluations <= 4000 + 4
    np.testing.assert_array_equal(first.patch_shapley_with_text, again.patch_shapley_with_text)
    assert first.image_on_text == again.image_on_text
    assert first.text_on_image == pytest.approx(0.0, abs=0.05)  # text only scales the patch explanation


def test_modality_influence_refuses_bad_arguments() -> None:
    with pytest.raises(ArgumentError, match="m must be"):
        modality_influence(additive, 0, N)
    with pytest.raises(ArgumentError, match="budget"):
        modality_influence(additive, M, N, budget=3)
    with pytest.raises(ArgumentError, match="tol"):
        modality_influence(additive, M, N, tol=1.5)
    with pytest.raises(ArgumentError, match="callable"):
        modality_influence("not a function", M, N)


def test_audit_does_not_import_grpc() -> None:
    code = "import sys, multishap.service.audit; sys.exit(any(m.split('.')[0] == 'grpc' for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- bootstrap ----------------------------------------------------------------------------------


def _ratios(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).beta(3, 2, size=count)


def test_bootstrap_matches_point_metrics_and_contains_them() -> None:
    r = _ratios(60)
    ci = bootstrap_dataset_metrics(r, n_boot=1000, seed=0)
    point = dataset_metrics(r)
    assert (ci.msr, ci.sdr, ci.count) == (point.msr, point.sdr, 60)
    assert ci.msr_ci[0] < ci.msr < ci.msr_ci[1]
    assert ci.sdr_ci[0] < ci.sdr < ci.sdr_ci[1]


def test_bootstrap_interval_shrinks_with_more_instances() -> None:
    small = bootstrap_dataset_metrics(_ratios(25), n_boot=1000)
    large = bootstrap_dataset_metrics(_ratios(400), n_boot=1000)
    assert large.msr_ci[1] - large.msr_ci[0] < 0.6 * (small.msr_ci[1] - small.msr_ci[0])
    assert large.sdr_ci[1] - large.sdr_ci[0] < 0.6 * (small.sdr_ci[1] - small.sdr_ci[0])


def test_bootstrap_is_bit_identical_for_a_seed() -> None:
    r = list(_ratios(50))
    assert bootstrap_dataset_metrics(r, seed=7) == bootstrap_dataset_metrics(iter(r), seed=7)
    assert bootstrap_dataset_metrics(r, seed=7).msr_ci != bootstrap_dataset_metrics(r, seed=8).msr_ci


def test_bootstrap_level_widens_the_interval() -> None:
    r = _ratios(80)
    narrow, wide = bootstrap_dataset_metrics(r, level=0.5), bootstrap_dataset_metrics(r, level=0.99)
    assert wide.msr_ci[0] < narrow.msr_ci[0] < narrow.msr_ci[1] < wide.msr_ci[1]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"synergy_ratios": []}, "non-empty"),
        ({"synergy_ratios": [0.2, 1.5]}, r"\[0, 1\]"),
        ({"synergy_ratios": [0.2, float("nan")]}, "finite"),
        ({"synergy_ratios": 0.3}, "iterable"),
        ({"synergy_ratios": [0.2], "n_boot": 0}, "n_boot"),
        ({"synergy_ratios": [0.2], "level": 1.0}, "level"),
        ({"synergy_ratios": [0.2], "seed": -1}, "seed"),
    ],
)
def test_bootstrap_refuses_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        bootstrap_dataset_metrics(**kwargs)


# --- explainer comparison -----------------------------------------------------------------------


@pytest.mark.parametrize("n, shift", [(5, 0.3), (12, -0.4), (25, 0.3), (25, -0.6)])
def test_wilcoxon_exact_matches_scipy(n: int, shift: float) -> None:
    d = np.random.default_rng(n).normal(shift, 1.0, size=n)
    count, w_plus, _, p, method = wilcoxon_signed_rank(d)
    ref = stats.wilcoxon(d, method="exact")
    assert (count, method) == (n, "exact")
    assert min(w_plus, n * (n + 1) / 2 - w_plus) == ref.statistic
    assert p == pytest.approx(ref.pvalue, abs=1e-10)


@pytest.mark.parametrize(
    "d",
    [
        np.random.default_rng(0).normal(0.4, 1.0, size=40),  # too many for the exact table
        np.round(np.random.default_rng(1).normal(0.5, 1.5, size=30)),  # ties and zeros
        np.array([1.0, 1.0, 2.0, -1.0, 0.0, 3.0, 3.0, -2.0, 0.0, 4.0, 1.0, 2.0]),  # small, tied, zeros
    ],
)
def test_wilcoxon_normal_approximation_matches_scipy(d: np.ndarray) -> None:
    _, _, _, p, method = wilcoxon_signed_rank(d)
    ref = stats.wilcoxon(d, zero_method="wilcox", correction=True, method="asymptotic")
    assert method == "normal"
    assert p == pytest.approx(ref.pvalue, abs=1e-10)


def test_wilcoxon_all_zero_differences() -> None:
    assert wilcoxon_signed_rank(np.zeros(6)) == (0, 0.0, 0.0, 1.0, "none")


def _table(scores: dict[str, np.ndarray]) -> list[tuple[str, str, float]]:
    return [(f"img{i}", name, float(s)) for name, col in scores.items() for i, s in enumerate(col)]


def test_mean_ranks_on_a_hand_made_table() -> None:
    rows = [
        ("i1", "A", 0.9), ("i1", "B", 0.5), ("i1", "C", 0.1),
        ("i2", "A", 0.4), ("i2", "B", 0.4), ("i2", "C", 0.8),
        ("i3", "A", 0.7), ("i3", "B", 0.2), ("i3", "C", 0.2),
    ]  # fmt: skip
    cmp = compare_explainers(rows)
    assert cmp.explainers == ("A", "B", "C") and cmp.instances == 3
    assert cmp.mean_ranks == pytest.approx({"A": 1.5, "B": 7 / 3, "C": 13 / 6})
    assert [(p.a, p.b) for p in cmp.pairs] == [("A", "B"), ("A", "C"), ("B", "C")]


def test_pairwise_tests_match_scipy_with_bonferroni_and_effect_size() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=20)
    scores = {"multishap": base + 0.8 + 0.3 * rng.normal(size=20), "shapley": base + 0.1 * rng.normal(size=20),
              "random": base - 0.5 + rng.normal(size=20)}
    cmp = compare_explainers(_table(scores))
    assert len(cmp.pairs) == 3
    for pair in cmp.pairs:
        d = scores[pair.a] - scores[pair.b]
        ref = stats.wilcoxon(d, method="exact")
        ranks = stats.rankdata(np.abs(d))
        assert pair.method == "exact" and pair.statistic == ref.statistic
        assert pair.p_value == pytest.approx(ref.pvalue, abs=1e-10)
        assert pair.p_bonferroni == pytest.approx(min(1.0, 3 * ref.pvalue), abs=1e-10)
        assert pair.effect_size == pytest.approx((ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum())
    best = cmp.pairs[0]
    assert (best.a, best.b, best.effect_size) == ("multishap", "shapley", 1.0)
    assert cmp.mean_ranks["multishap"] < cmp.mean_ranks["shapley"] < cmp.mean_ranks["random"]


def test_compare_accepts_a_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    rows = _table({"a": np.arange(6.0), "b": np.arange(6.0)[::-1]})
    frame = pd.DataFrame(rows, columns=["instance", "explainer", "score"])
    assert compare_explainers(frame) == compare_explainers(rows)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([("i1", "A", 0.5), ("i2", "A", 0.4)], "at least 2 explainers"),
        ([("i1", "A", 0.5), ("i1", "B", 0.4), ("i2", "A", 0.3)], "'B' has no score"),
        ([("i1", "A", 0.5), ("i1", "A", 0.6), ("i1", "B", 0.4)], "more than one score"),
        ([("i1", "A", float("nan")), ("i1", "B", 0.4)], "finite"),
        ([("i1", "A", "high"), ("i1", "B", 0.4)], "must be a number"),
        ([("i1", "A")], r"\(instance, explainer, score\)"),
        ("rows", "list of"),
    ],
)
def test_compare_refuses_bad_tables(rows: object, message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        compare_explainers(rows)


# --- stability ----------------------------------------------------------------------------------

IMAGE = np.random.default_rng(9).integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
FIXED_PHI = np.random.default_rng(10).normal(size=(20, 20))


def ignores_everything(image: np.ndarray, seed: int) -> tuple[np.ndarray, None]:
    return FIXED_PHI, None


def pure_noise(image: np.ndarray, seed: int) -> tuple[np.ndarray, None]:
    """A new random Φ for every distinct (image, seed)."""
    return np.random.default_rng([seed, *image.ravel()[:64]]).normal(size=(20, 20)), None


def image_hash_explainer(image: np.ndarray, seed: int) -> tuple[np.ndarray, None]:
    """Depends on every pixel but not on the estimator seed."""
    return np.random.default_rng(np.frombuffer(image.tobytes(), dtype=np.uint32)).normal(size=(20, 20)), None


def test_explainer_that_ignores_the_perturbation_is_perfectly_stable() -> None:
    st = stability(ignores_everything, image=IMAGE)
    assert (st.rank_correlation, st.topk_overlap) == (1.0, 1.0)
    assert set(st.per_perturbation) == {"seed", "jpeg", "noise", "shift"}
    assert all((p.rank_correlation, p.topk_overlap) == (1.0, 1.0) for p in st.per_perturbation.values())
    assert st.top_k == 40 and st.kept_entries == st.total_entries == 400


def test_noise_explainer_is_unstable() -> None:
    st = stability(pure_noise, repeats=3, image=IMAGE)
    assert abs(st.rank_correlation) < 0.2
    assert st.topk_overlap < 0.35


def test_image_perturbations_change_the_image_and_seed_does_not() -> None:
    st = stability(image_hash_explainer, repeats=2, image=IMAGE)
    assert st.per_perturbation["seed"].rank_correlation == 1.0
    for name in ("jpeg", "noise", "shift"):
        assert abs(st.per_perturbation[name].rank_correlation) < 0.3


def test_stderr_rule_ignores_entries_indistinguishable_from_zero() -> None:
    """Ten strong entries are stable; 390 entries are sampling noise of stderr 1."""
    strong = np.zeros(400)
    strong[:10] = np.arange(10.0, 110.0, 10.0)
    stderr = np.where(strong > 0, 0.5, 1.0).reshape(20, 20)

    def explain(image: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
        noise = np.random.default_rng([seed, int(image.sum())]).normal(0.0, 0.3, size=400)
        return (strong + np.where(strong > 0, 0.0, noise)).reshape(20, 20), stderr

    ruled = stability(explain, ["seed", "noise"], repeats=3, image=IMAGE, z=2.0)
    raw = stability(explain, ["seed", "noise"], repeats=3, image=IMAGE, z=0.0)
    assert ruled.kept_entries == 10 and raw.kept_entries == 400
    assert (ruled.rank_correlation, ruled.topk_overlap) == (1.0, 1.0)
    assert raw.rank_correlation < 0.3


def test_stability_is_deterministic_for_a_seed_and_grayscale_works() -> None:
    gray = IMAGE[:, :, 0]
    first = stability(image_hash_explainer, ["jpeg", "shift"], repeats=2, seed=4, image=gray, top_k=5)
    assert first == stability(image_hash_explainer, ["shift", "jpeg"], repeats=2, seed=4, image=gray, top_k=5)
    assert first.top_k == 5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"perturbations": ["blur"]}, "perturbations"),
        ({"perturbations": ["seed", "seed"]}, "at most once"),
        ({"perturbations": []}, "non-empty"),
        ({"repeats": 0}, "repeats"),
        ({"z": -1.0}, "z must be"),
        ({"top_k": 0}, "top_k"),
        ({"image": IMAGE.astype(float)}, "uint8"),
        ({"image": IMAGE[:3, :3]}, "at least"),
    ],
)
def test_stability_refuses_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"image": IMAGE, **kwargs}
    with pytest.raises(ArgumentError, match=message):
        stability(ignores_everything, **args)


def test_stability_refuses_inconsistent_explanations() -> None:
    shapes = iter([(4, 4), (3, 4)])
    with pytest.raises(ArgumentError, match="shape"):
        stability(lambda image, seed: (np.ones(next(shapes)), None), ["seed"], repeats=1, image=IMAGE)


def test_the_readme_snippet_runs():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    library = readme.split("\n## Library mode\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", library, re.S)
    namespace: dict = {}
    for block in blocks:
        exec(block, namespace)   # the README's own code, as a reader would paste it
    assert 0.0 <= namespace["mi"].image_on_text <= 1.0 and namespace["ci"].msr_ci[0] <= namespace["ci"].msr
    assert namespace["cmp"].mean_ranks == {"multishap": 1.0, "random": 2.0}


def test_repeats_of_an_image_perturbation_are_distinct_images() -> None:
    from multishap.service.audit.perturb import OFFSETS, perturbed_images

    for name, code in (("jpeg", 1), ("noise", 2), ("shift", 3)):
        images = perturbed_images(name, IMAGE, 0, code, 5)
        assert len({img.tobytes() for img in images}) == 5, name
    shifted = perturbed_images("shift", IMAGE, 0, 3, len(OFFSETS) + 1)
    assert len({img.tobytes() for img in shifted}) == len(OFFSETS)  # every offset once, then the order repeats
