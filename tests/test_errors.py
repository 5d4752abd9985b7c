"""The status table: a deliberate error maps to its code; anything else is a bug, INTERNAL with an error id."""

from __future__ import annotations

import logging
import re

import grpc
import numpy as np
import pytest

from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.math.validation import ArgumentError
from multishap.service.rpc.wire import pack_coalitions
from multishap.v1 import scorer_pb2, scorer_pb2_grpc
from servers import adapters, instance


class BuggyBackend(SyntheticBackend):
    """Raises what a numpy bug raises (a plain ValueError) for one text, the math's ArgumentError for another."""

    def forward(self, instance, masks):
        if instance.decoded.text == "bug":
            raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")
        if instance.decoded.text == "argument":
            raise ArgumentError("budget must be at least 1; got 0")
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
