"""The status table: a deliberate error maps to its code; anything else is a bug, INTERNAL with an error id."""

from __future__ import annotations

import logging
import re

import grpc
import numpy as np
import pytest

from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.math.validation import ArgumentError
from multishap.service.rpc.errors import InvalidArgument, ResourceExhausted
from multishap.service.rpc.wire import pack_coalitions
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from multishap.v1 import explainer_pb2, scorer_pb2, scorer_pb2_grpc
from servers import adapters, explainer, instance


class BuggyBackend(SyntheticBackend):
    """Raises what a numpy bug raises (a plain ValueError) for one text, the math's ArgumentError for another."""

    def forward(self, instance, masks):
        if instance.decoded.text == "bug":
            raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")
        if instance.decoded.text == "argument":
            raise ArgumentError("budget must be at least 1; got 0")
        if instance.decoded.text == "refused":
            raise InvalidArgument("the endpoint refused the prompt")
        if instance.decoded.text == "capped":
            raise ResourceExhausted("this explanation has used its 5 paid requests", retry_after=2.0,
                                    limit="max_requests")
        return super().forward(instance, masks)


@pytest.fixture(scope="module")
def stub():
    with adapters(BuggyBackend()) as (running,):
        with grpc.insecure_channel(running.address) as channel:
            yield scorer_pb2_grpc.ScorerStub(channel)


def score(stub, text: str) -> grpc.RpcError:
    inst = instance(text=text)
    masks = np.ones((1, 9 + len(text.split())), dtype=bool)
    with pytest.raises(grpc.RpcError) as info:
        stub.Score(scorer_pb2.ScoreRequest(instance=inst, num_players=masks.shape[1], num_coalitions=1,
                                           coalitions=pack_coalitions(masks)),
                   timeout=30)
    return info.value


def test_a_bug_that_raises_value_error_is_internal_with_a_logged_error_id(stub, caplog):
    with caplog.at_level(logging.ERROR, logger="multishap"):
        err = score(stub, "bug")
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "broadcast" not in err.details()
    error_id = re.fullmatch(r"internal error; the server log has the details \(error id ([0-9a-f]{12})\)",
                            err.details()).group(1)
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "broadcast" in str(logged[0].exc_info[1])


def test_the_maths_argument_error_is_the_callers_invalid_argument(stub):
    err = score(stub, "argument")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == "budget must be at least 1; got 0"


def explained(text: str) -> grpc.RpcError:
    """An Explain through a real explainer whose target's backend refuses ``text``."""
    with adapters(BuggyBackend()) as (running,), explainer({"syn": [running.address]}) as (_, stub, _servicer):
        request = explainer_pb2.ExplainRequest(target="syn", instance=instance(text=text), budget=64)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Explain(request, timeout=30))
    return info.value


def test_a_targets_refusal_of_the_instance_stays_invalid_argument():
    err = explained("refused")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "target 'syn' refused the instance: the endpoint refused the prompt"


def test_a_targets_limit_reaches_the_caller_with_its_quota_failure_and_pushback():
    err = explained("capped")
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "used its 5 paid requests" in err.details()
    details = rpc_status.from_call(err).details
    quota, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
    assert details[0].Unpack(retry) and retry.retry_delay.ToTimedelta().total_seconds() == 2.0
    assert details[1].Unpack(quota) and [v.subject for v in quota.violations] == ["max_requests"]
