"""Bad arguments and bad value functions raise ValueError with a clear sentence."""

import numpy as np
import pytest

from multishap.service.math.games import make_game
from multishap.service.math.estimators import estimate_interactions, exact_interactions

GAME = make_game("mlp", 3, 3, seed=0)
METHODS = ["exact", "multishap", "kernel", "auto"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(m=0), "m must be at least 1"),
        (dict(n=0), "n must be at least 1"),
        (dict(m=2.5), "m must be an integer"),
        (dict(method="magic"), "method must be one of"),
        (dict(index="FSII"), "index must be one of"),
        (dict(budget=0), "budget must be at least 1"),
        (dict(budget=3, method="auto"), "too small"),
        (dict(budget=10, method="multishap"), "needs at least 20 coalitions"),
        (dict(budget=10, method="kernel"), "needs at least"),
        (dict(budget=63, method="exact"), "needs at least 64"),
        (dict(budget="many"), "budget must be an integer"),
        (dict(seed=-1), "seed must be at least 0"),
        (dict(max_batch=0), "max_batch must be at least 1"),
        (dict(value_fn="not callable"), "value_fn must be callable"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = dict(value_fn=GAME, m=3, n=3, budget=5_000)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        estimate_interactions(**args)


def test_exact_refuses_huge_games():
    with pytest.raises(ValueError, match="limited to 26 players"):
        exact_interactions(GAME, 20, 10)


def bad(kind):
    def value_fn(masks):
        v = GAME(masks)
        if kind == "shape":
            return v[:, None]
        if kind == "short":
            return v[:-1] if len(v) > 1 else np.zeros(2)
        if kind == "nan":
            v[len(v) // 2] = np.nan
        if kind == "inf":
            v[0] = np.inf
        if kind == "complex":
            return v.astype(complex)
        if kind == "str":
            return v.astype(str)
        if kind == "none":
            return None
        return v

    return value_fn


@pytest.mark.parametrize(
    "kind, message",
    [
        ("shape", r"returned shape \(\d+, 1\)"),
        ("short", "one value per coalition"),
        ("nan", "NaN or infinity"),
        ("inf", "NaN or infinity"),
        ("complex", "real numbers"),
        ("str", "real numbers"),
        ("none", "real numbers"),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_bad_value_functions(kind, message, method):
    with pytest.raises(ValueError, match=message):
        estimate_interactions(bad(kind), 3, 3, method=method, budget=64 if method == "exact" else 2_000)


def test_games_past_the_float64_range_of_the_size_weights_are_refused():
    from multishap.service.math.estimators import ESTIMATORS, estimate_interactions

    most = ESTIMATORS["kernel"].max_players
    with pytest.raises(ValueError, match=f"method 'kernel' takes at most {most} players; this game has 1030"):
        estimate_interactions(lambda masks: np.zeros(len(masks)), 1000, 30, method="kernel")
