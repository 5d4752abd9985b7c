"""Budgets in the target's cost unit and stopping at a target precision, through a real explainer and adapters."""

from __future__ import annotations

import math
import threading

import grpc
import numpy as np
import pytest

from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.v1 import explainer_pb2, scorer_pb2
from servers import adapters, explainer, instance


class EncoderPassBackend(SyntheticBackend):
    """The synthetic game priced like a dual encoder (an image or text encode costs 1, a coalition nothing),
    recording every coalition it scores."""

    def __init__(self) -> None:
        self.scored: list[np.ndarray] = []
        self._lock = threading.Lock()

    def costs(self) -> scorer_pb2.Costs:
        return scorer_pb2.Costs(unit="encoder passes", image_encode=1, text_encode=1, coalition=0)

    def forward(self, prepared, masks):
        with self._lock:
            self.scored.append(np.array(masks))
        return super().forward(prepared, masks)


def _explain(stub, **fields) -> tuple[list, explainer_pb2.Explanation]:
    events = list(stub.Explain(explainer_pb2.ExplainRequest(target="t", instance=instance(), **fields), timeout=60))
    return [e.progress for e in events if e.HasField("progress")], events[-1].explanation


def _distinct(rows: np.ndarray) -> int:
    return len(np.unique(np.packbits(rows, axis=1), axis=0))


def test_a_cost_budget_counts_encoder_passes_at_a_factorised_target():
    backend = EncoderPassBackend()
    with adapters(backend) as (a,), explainer({"t": [a.address]}) as (_, stub, _servicer):
        progress, exp = _explain(stub, method="multishap", budget=200, budget_unit=explainer_pb2.BUDGET_UNIT_COST)
    scored = np.concatenate(backend.scored)
    m = 9
    passes = _distinct(scored[:, :m]) + _distinct(scored[:, m:])
    assert exp.cost_unit == "encoder passes" and exp.budget_unit == explainer_pb2.BUDGET_UNIT_COST
    assert exp.cost == passes <= 200
    # Coalitions share their halves: more coalitions were scored than encoder passes were paid.
    assert exp.evaluations == _distinct(scored) > passes
    assert progress and progress[-1].cost == passes and progress[-1].cost_unit == "encoder passes"
    assert all(p.budget == 200 and p.budget_unit == explainer_pb2.BUDGET_UNIT_COST for p in progress)


def test_a_coalition_budget_reports_what_it_cost_in_the_targets_unit():
    backend = EncoderPassBackend()
    with adapters(backend) as (a,), explainer({"t": [a.address]}) as (_, stub, _servicer):
        _, exp = _explain(stub, method="multishap", budget=200)
    scored = np.concatenate(backend.scored)
    assert exp.evaluations == _distinct(scored) <= 200
    assert exp.cost == _distinct(scored[:, :9]) + _distinct(scored[:, 9:])
    assert exp.budget_unit == explainer_pb2.BUDGET_UNIT_COALITIONS


def test_cost_units_reach_prometheus():
    backend = EncoderPassBackend()
    with adapters(backend) as (a,), explainer({"t": [a.address]}) as (running, stub, _servicer):
        _, exp = _explain(stub, method="multishap", budget=150)
        spent = running.registry.get_sample_value("multishap_cost_units_total",
                                                  {"target": "t", "unit": "encoder passes"})
    assert spent == exp.cost > 0


def test_at_a_coalition_priced_target_cost_equals_coalitions():
    with adapters(SyntheticBackend()) as (a,), explainer({"t": [a.address]}) as (_, stub, _servicer):
        _, exp = _explain(stub, method="multishap", budget=300, budget_unit=explainer_pb2.BUDGET_UNIT_COST)
    assert exp.cost_unit == "coalitions" and exp.cost == exp.evaluations <= 300


def test_target_stderr_stops_early_and_says_so():
    with adapters(SyntheticBackend()) as (a,), explainer({"t": [a.address]}) as (_, stub, _servicer):
        _, loose = _explain(stub, method="multishap", budget=20_000, target_stderr=0.05)
        _, tight = _explain(stub, method="multishap", budget=600, target_stderr=1e-9)
    assert loose.target_stderr == 0.05 and loose.target_stderr_reached
    assert loose.evaluations < 20_000
    assert float(np.max(loose.stderr.values)) <= 0.05
    assert not tight.target_stderr_reached and tight.evaluations <= 600


@pytest.mark.parametrize("fields, words", [
    ({"target_stderr": math.nan}, "target_stderr"),
    ({"target_stderr": -1.0}, "target_stderr"),
    ({"budget_unit": 7}, "budget_unit"),
])
def test_bad_precision_options_are_refused_before_any_scoring(fields, words):
    backend = EncoderPassBackend()
    with adapters(backend) as (a,), explainer({"t": [a.address]}) as (_, stub, _servicer):
        with pytest.raises(grpc.RpcError) as err:
            _explain(stub, **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in err.value.details()
    assert backend.scored == []
