"""The job layer: one request scores each distinct coalition once, whichever computation asks for it."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import pytest

from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.math.faithfulness import macro_game_sii, synergistic_faithfulness, unimodal_faithfulness
from multishap.service.math.games import make_game
from multishap.v1 import explainer_pb2
from servers import adapters, explainer, instance

TEXT = "a cat lying on red couch"  # 6 tokens on a 3x3 grid: m = 9, n = 6


class CountingBackend(SyntheticBackend):
    """The synthetic game, recording every coalition it is asked to score."""

    def __init__(self) -> None:
        self.rows: list[bytes] = []
        self._lock = threading.Lock()

    def forward(self, instance, masks):
        with self._lock:
            self.rows += [np.packbits(row).tobytes() for row in masks]
        return super().forward(instance, masks)


@pytest.fixture()
def counted():
    backend = CountingBackend()
    with adapters(backend) as (running,):
        with explainer({"syn": [running.address]}) as (_, stub, _servicer):
            yield backend, stub


def faithfulness(stub, **fields) -> explainer_pb2.FaithfulnessResult:
    request = explainer_pb2.FaithfulnessRequest(target="syn", instance=instance(text=TEXT), **fields)
    events = list(stub.Faithfulness(request, timeout=120))
    return events[-1].result


def library_rows(m: int, n: int, a, b, macro: bool) -> tuple[int, int]:
    """Rows the three metrics ask for when each runs on its own, and the distinct ones among them."""
    seen: list[bytes] = []

    def game(masks):
        seen.extend(np.packbits(row).tobytes() for row in masks)
        return make_game("mlp", m, n, seed=3)(masks)

    synergistic_faithfulness(game, m, n, a, b)
    unimodal_faithfulness(game, m, n, a, b)
    if macro:
        macro_game_sii(game, m, n, a, b, seed=0)
    return len(seen), len(set(seen))


@pytest.mark.parametrize("macro", [False, True])
def test_faithfulness_scores_each_coalition_once_and_counts_what_it_scored(counted, macro):
    backend, stub = counted
    m, n = 9, 6
    a, b = np.linspace(1, 0, m), np.linspace(0, 1, n)
    result = faithfulness(stub, patch_scores=a.tolist(), token_scores=b.tolist(), macro_game=macro)
    asked, distinct = library_rows(m, n, a, b, macro)
    assert asked > distinct  # the metrics share coalitions: a store per metric would pay for them twice
    assert len(backend.rows) == len(set(backend.rows)) == result.evaluations == distinct


def test_a_built_in_explainer_shares_its_coalitions_with_the_metrics(counted):
    backend, stub = counted
    result = faithfulness(stub, explainer="multishap", budget=2000)
    assert len(backend.rows) == len(set(backend.rows)) == result.evaluations


def test_faithfulness_values_do_not_change_with_the_shared_game(counted):
    _, stub = counted
    m, n = 9, 6
    a, b = np.linspace(1, 0, m), np.linspace(0, 1, n)
    result = faithfulness(stub, patch_scores=a.tolist(), token_scores=b.tolist())
    alone = synergistic_faithfulness(make_game("mlp", m, n, seed=3), m, n, a, b)
    assert result.f_syn == alone.f_syn and result.f_syn_raw == alone.f_syn_raw
    assert list(result.curve_ins) == alone.curve_ins.tolist()


def test_given_scores_of_the_wrong_length_are_refused_before_scoring(counted):
    backend, stub = counted
    with pytest.raises(grpc.RpcError) as err:
        faithfulness(stub, patch_scores=[1.0] * 9, token_scores=[1.0] * 5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and backend.rows == []


def test_the_unimodal_curves_reach_the_sdk_report(counted):
    from multishap.client import FaithfulnessReport

    _, stub = counted
    m, n = 9, 6
    a, b = np.linspace(1, 0, m), np.linspace(0, 1, n)
    request = explainer_pb2.FaithfulnessRequest(target="syn", instance=instance(text=TEXT), patch_scores=a.tolist(),
                                                token_scores=b.tolist())
    report = FaithfulnessReport.from_proto(list(stub.Faithfulness(request, timeout=120))[-1].result, request=request)
    alone = unimodal_faithfulness(make_game("mlp", m, n, seed=3), m, n, a, b)
    assert report.visual.curve_ins == tuple(alone.visual.curve_ins.tolist())
    assert report.text.curve_del == tuple(alone.text.curve_del.tolist()) and len(report.text.curve_del) == 11
    assert FaithfulnessReport.from_json(report.to_json()).visual == report.visual
    assert {"visual_insertion", "text_deletion"} <= set(report.to_dataframe().columns)
    fig = report.plot()
    assert len(fig.axes) == 2 and len(fig.axes[1].get_legend().get_texts()) == 4
