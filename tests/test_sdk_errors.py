"""One exception class per status code, from real servers on loopback: the explainer's own refusals, and a small
server of this test's that aborts with the rich statuses the explainer sends (QuotaFailure, error ids)."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import multishap.client as sdk
from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import AsyncExplainerClient, ExplainerClient
from multishap.client.errors import ERRORS
from multishap.service.rpc.config import Limits
from multishap.v1 import explainer_pb2_grpc
from servers import TEXT, NaNBackend, SlowBackend, adapters, explainer, free_port

PARAMS = {"family": "mixed", "seed": "1"}
ERROR_ID = "0123456789ab"


@pytest.fixture(scope="module")
def address():
    with adapters(SyntheticBackend(), SlowBackend(1.0), NaNBackend()) as (syn, slow, nan):
        targets = {"syn": [syn.address], "slow": [slow.address], "nan": [nan.address]}
        with explainer(targets, Limits(max_budget=1000)) as (e, _, _):
            yield e.address


def explain(address: str, **options):
    options = {"target": "syn", "grid": (2, 2), "parameters": PARAMS, "budget": 300, **options}
    with ExplainerClient(address, timeout=30) as client:
        return client.explain(png(), TEXT, **options)


def raised(call, **options) -> sdk.ExplainerError:
    with pytest.raises(sdk.ExplainerError) as err:
        call(**options)
    return err.value


@pytest.mark.parametrize("options, error, code", [
    ({"target": "nope"}, sdk.NotFoundError, "NOT_FOUND"),
    ({"method": "nope"}, sdk.InvalidArgumentError, "INVALID_ARGUMENT"),
    ({"budget": 5000}, sdk.ResourceExhaustedError, "RESOURCE_EXHAUSTED"),
    ({"target": "slow", "timeout": 0.3}, sdk.DeadlineExceededError, "DEADLINE_EXCEEDED"),
    ({"target": "nan"}, sdk.InternalError, "INTERNAL"),
])
def test_the_explainers_refusals_arrive_as_their_class(address, options, error, code):
    err = raised(explain, address=address, **options)
    assert type(err) is error and err.code == code and err.details and str(err).startswith(code)


def test_a_limit_refusal_names_the_limit(address):
    err = raised(explain, address=address, budget=5000)
    [(subject, description)] = err.quota_violations
    assert subject == "max_budget" and "5000" in description and err.retry_after is None


def test_a_target_that_answers_wrongly_has_no_error_id(address):
    err = raised(explain, address=address, target="nan")
    assert err.error_id is None and "NaN" in err.details


def test_no_server_is_unavailable():
    err = raised(explain, address=f"127.0.0.1:{free_port()}")
    assert isinstance(err, sdk.UnavailableError) and err.code == "UNAVAILABLE"


def test_the_async_client_raises_the_same_classes(address):
    async def run(**options):
        async with AsyncExplainerClient(address, timeout=30) as client:
            return await client.explain(png(), TEXT, **{"target": "syn", "grid": (2, 2), "parameters": PARAMS,
                                                        "budget": 300, **options})

    assert type(raised(lambda: asyncio.run(run(target="nope")))) is sdk.NotFoundError
    refused = raised(lambda: asyncio.run(run(budget=5000)))
    assert type(refused) is sdk.ResourceExhaustedError and refused.quota_violations[0][0] == "max_budget"


class Aborting(explainer_pb2_grpc.ExplainerServicer):
    """Aborts Explain with the status its request's target names (see STATUSES); Faithfulness is unimplemented."""

    def Explain(self, request, context):
        context.abort_with_status(rpc_status.to_status(STATUSES[request.target]))
        yield


def packed(message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


QUOTA = error_details_pb2.QuotaFailure(violations=[
    error_details_pb2.QuotaFailure.Violation(subject="max_budget", description="budget 5000 over 1000"),
    error_details_pb2.QuotaFailure.Violation(subject="max_patches", description="400 patches over 256"),
])
STATUSES = {
    "quota": status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="over two limits", details=[packed(QUOTA)]),
    "bare": status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="over a limit"),
    "internal": status_pb2.Status(code=code_pb2.INTERNAL,
                                  message=f"internal error; the server log has the details (error id {ERROR_ID})"),
    "cancelled": status_pb2.Status(code=code_pb2.CANCELLED, message="the server is shutting down"),
    "unauthenticated": status_pb2.Status(code=code_pb2.UNAUTHENTICATED, message="the API key was refused"),
    "denied": status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="not for you"),
    "precondition": status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="the model is not a VLM"),
    "unavailable": status_pb2.Status(code=code_pb2.UNAVAILABLE, message="no replica answers"),
    "data_loss": status_pb2.Status(code=code_pb2.DATA_LOSS, message="bytes were lost"),
}


@pytest.fixture(scope="module")
def aborting():
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    explainer_pb2_grpc.add_ExplainerServicer_to_server(Aborting(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_quota_failure_violations_are_read(aborting):
    err = raised(explain, address=aborting, target="quota")
    assert type(err) is sdk.ResourceExhaustedError and err.details == "over two limits"
    assert err.quota_violations == [("max_budget", "budget 5000 over 1000"), ("max_patches", "400 patches over 256")]
    assert raised(explain, address=aborting, target="bare").quota_violations == []


def test_an_internal_errors_id_is_parsed(aborting):
    err = raised(explain, address=aborting, target="internal")
    assert type(err) is sdk.InternalError and err.error_id == ERROR_ID


@pytest.mark.parametrize("target, error, code", [
    ("cancelled", sdk.CancelledError, "CANCELLED"), ("unauthenticated", sdk.UnauthenticatedError, "UNAUTHENTICATED"),
    ("denied", sdk.PermissionDeniedError, "PERMISSION_DENIED"),
    ("precondition", sdk.FailedPreconditionError, "FAILED_PRECONDITION"),
    ("unavailable", sdk.UnavailableError, "UNAVAILABLE"), ("data_loss", sdk.UnexpectedStatusError, "DATA_LOSS"),
])
def test_every_status_has_its_class(aborting, target, error, code):
    err = raised(explain, address=aborting, target=target)
    assert type(err) is error and err.code == code and err.details == STATUSES[target].message


def test_an_unimplemented_call_is_unimplemented(aborting):
    with ExplainerClient(aborting, timeout=30) as client:
        err = raised(client.faithfulness, image=png(), text=TEXT, target="syn", grid=(2, 2))
    assert type(err) is sdk.UnimplementedError and err.code == "UNIMPLEMENTED"


def test_every_class_is_exported_and_maps_its_own_code():
    for code, error in ERRORS.items():
        assert getattr(sdk, error.__name__) is error and issubclass(error, sdk.ExplainerError)
        assert code in (error.__doc__ or "")
    assert issubclass(sdk.UnexpectedStatusError, sdk.ExplainerError)
