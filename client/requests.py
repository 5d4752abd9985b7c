"""The calls both clients make, defined once: their options and defaults, the request messages they send, and how
each call's final message becomes the SDK's result; a client adds only the transport."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, TypeVar

from google.protobuf.message import Message

from multishap.service import defaults
from multishap.service.rpc.convert import IMAGE_BASELINES, baseline_to_proto
from multishap.v1 import common_pb2, explainer_pb2

from .explanation import Explanation, FaithfulnessReport, Target
from .images import EncodedImage, ImageLike, encode_image
from .progress import BUDGET_UNITS, ProgressArg

BASELINES = {None: common_pb2.IMAGE_BASELINE_UNSPECIFIED, **IMAGE_BASELINES}

Method = TypeVar("Method", bound=Callable[..., Any])


@dataclass(frozen=True)
class Call:
    """One streaming call: the RPC's name, its request, the event field holding its result, the progress bar's
    label, where progress goes, its timeout (None: the client's), and how the result message becomes the SDK's."""

    rpc: str
    request: Message
    result_field: str
    label: str
    progress: ProgressArg
    timeout: Optional[float]
    convert: Callable[[Any], Any]


def masking_options(image_baseline: Optional[str] = None, blur_radius: float = 0.0,
                    text_mask: str = "") -> common_pb2.MaskingOptions:
    """How masked players are rendered; None, 0 and "" leave the adapter's defaults."""
    return common_pb2.MaskingOptions(image_baseline=baseline_to_proto(image_baseline), blur_radius=float(blur_radius),
                                     text_mask=text_mask)


def budget_unit_to_proto(name: str) -> int:
    """The BudgetUnit of a name ("coalitions" or "cost")."""
    if name not in BUDGET_UNITS:
        raise ValueError(f"budget_unit must be one of {', '.join(BUDGET_UNITS)}; got {name!r}")
    return BUDGET_UNITS[name]


def build_instance(image: bytes, text: str, answer: str, grid: tuple[int, int],
                   parameters: Optional[Mapping[str, str]], masking: common_pb2.MaskingOptions) -> common_pb2.Instance:
    """The Instance message for encoded image bytes, a text and the answer being explained."""
    rows, cols = grid
    return common_pb2.Instance(image=image, text=text, target=answer, grid=common_pb2.Grid(rows=rows, cols=cols),
                               masking=masking, parameters={str(k): str(v) for k, v in (parameters or {}).items()})


def explain_call(image: ImageLike, text: str, *, target: str, answer: str = "", grid: tuple[int, int] = defaults.GRID,
                 method: str = defaults.METHOD, budget: int = defaults.SERVER_BUDGET, seed: int = defaults.SEED,
                 index: str = defaults.INDEX, parameters: Optional[Mapping[str, str]] = None,
                 image_baseline: Optional[str] = None, blur_radius: float = 0.0, text_mask: str = "",
                 dry_run: bool = False, target_stderr: float = 0.0, budget_unit: str = "coalitions",
                 candidates: Optional[Sequence[str]] = None, ground_truth: Optional[str] = None,
                 influence_budget: int = 0, faithfulness: bool = False, role: str = "",
                 progress: ProgressArg = False, timeout: Optional[float] = None) -> Call:
    """Explain one instance: Phi, metrics, cost and provenance (see :class:`Explanation`).

    ``image`` is a path, encoded bytes (sent as they are), a PIL image or an array. ``budget`` 0 (the default)
    asks for the server's configured default. ``image_baseline`` ("zero", "mean", "blur"; None: the adapter's),
    ``blur_radius`` and ``text_mask`` say how masked players are rendered. ``dry_run=True`` selects the
    coalitions without scoring them: ``phi`` is zeros, ``evaluations`` the coalitions the method would score
    and ``usage`` what the target estimates they would cost. ``target_stderr`` > 0 stops as soon as every entry's
    standard error is at most that (``target_stderr_reached`` says whether it was, before the budget ran out).
    ``budget_unit`` "coalitions" counts the budget in distinct coalitions, "cost" in the target's cost unit
    (encoder passes for a dual encoder, requests for an endpoint). ``progress`` is True (a bar) or a callable taking
    :class:`ProgressUpdate`; ``timeout`` (seconds) bounds the call and its retries.

    Audit parts (none in a dry run): ``candidates`` and/or ``ground_truth`` (non-empty) ask the target for its own answer
    (the candidate it scores highest, else its greedy answer or top class) and judge it against the ground truth
    (``Explanation.answer``); ``influence_budget`` > 0 computes modality influence with that many coalitions
    (``Explanation.influence``); ``faithfulness=True`` computes F_syn of this explanation's MultiSHAP scores
    (``Explanation.faithfulness``). ``role`` ("true" or "foil") labels the explained answer or caption as the
    ground truth or a foil, for a dataset's splits.
    """
    encoded, instance = _instance(image, text, answer, grid, parameters, image_baseline, blur_radius, text_mask)
    request = explainer_pb2.ExplainRequest(target=target, instance=instance, method=method, budget=budget, seed=seed,
                                           index=index, dry_run=dry_run, target_stderr=target_stderr,
                                           budget_unit=budget_unit_to_proto(budget_unit),
                                           influence_budget=influence_budget, faithfulness=faithfulness,
                                           role=role)
    if candidates or ground_truth:
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of strings, not one string")
        request.check.CopyFrom(explainer_pb2.AnswerCheck(candidates=[str(c) for c in candidates or ()],
                                                         ground_truth=ground_truth or ""))
    return Call("Explain", request, "explanation", "explaining", progress, timeout,
                _converter(Explanation, request, encoded))


def faithfulness_call(image: ImageLike, text: str, *, target: str, answer: str = "",
                      grid: tuple[int, int] = defaults.GRID, patch_scores: Optional[Sequence[float]] = None,
                      token_scores: Optional[Sequence[float]] = None,
                      explainer: str = defaults.FAITHFULNESS_EXPLAINER, steps: int = defaults.FAITHFULNESS_STEPS,
                      eps: float = defaults.FAITHFULNESS_EPS, macro_game: bool = False,
                      chunks: int = defaults.MACRO_CHUNKS, seed: int = defaults.SEED,
                      budget: int = defaults.SERVER_BUDGET, parameters: Optional[Mapping[str, str]] = None,
                      image_baseline: Optional[str] = None, blur_radius: float = 0.0, text_mask: str = "",
                      progress: ProgressArg = False, timeout: Optional[float] = None) -> Call:
    """F_syn and unimodal metrics of given scores, or of a built-in explainer (see :class:`FaithfulnessReport`).

    ``patch_scores`` and ``token_scores`` are the explanation to score; without them ``explainer`` ("multishap",
    "random", "shapley") makes one with ``budget`` coalitions (0: the server's default). The masking options
    are :meth:`explain`'s: the F_syn protocol masks with ``image_baseline="blur"``.
    """
    encoded, instance = _instance(image, text, answer, grid, parameters, image_baseline, blur_radius, text_mask)
    request = explainer_pb2.FaithfulnessRequest(
        target=target, instance=instance, patch_scores=_scores(patch_scores, "patch_scores"),
        token_scores=_scores(token_scores, "token_scores"), explainer=explainer, steps=steps, eps=eps,
        macro_game=macro_game, chunks=chunks, seed=seed, budget=budget,
    )
    return Call("Faithfulness", request, "result", "faithfulness", progress, timeout,
                _converter(FaithfulnessReport, request, encoded))


def targets_from_proto(reply: explainer_pb2.ListTargetsResponse) -> list[Target]:
    """The targets a ListTargets reply names."""
    return [Target.from_proto(t) for t in reply.targets]


def call_options(spec: Callable[..., Call], returns: str) -> Callable[[Method], Method]:
    """Give a client method ``spec``'s parameters (after ``self``) and docstring, so that both clients show the one
    signature ``spec`` defines and pass their arguments to it."""
    own = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    signature = inspect.signature(spec)
    signature = signature.replace(parameters=[own, *signature.parameters.values()], return_annotation=returns)

    def decorate(method: Method) -> Method:
        method.__signature__ = signature
        method.__doc__ = spec.__doc__
        return method

    return decorate


def _instance(image: ImageLike, text: str, answer: str, grid: tuple[int, int],
              parameters: Optional[Mapping[str, str]], image_baseline: Optional[str], blur_radius: float,
              text_mask: str) -> tuple[EncodedImage, common_pb2.Instance]:
    """The image as sent and the Instance that carries it with the call's masking options."""
    encoded = encode_image(image)
    return encoded, build_instance(encoded.data, text, answer, grid, parameters,
                                   masking_options(image_baseline, blur_radius, text_mask))


def _converter(result: Any, request: Message, encoded: EncodedImage) -> Callable[[Any], Any]:
    """How a call's result message becomes ``result`` (Explanation or FaithfulnessReport), with the request it
    answers and the image's pixels and file name."""
    return lambda msg: result.from_proto(msg, request=request, image=encoded.pixels(), image_name=encoded.name)


def _scores(values: Optional[Sequence[float]], name: str) -> list[float]:
    """The scores as floats; ValueError naming ``name`` when one is not a number."""
    try:
        return [float(v) for v in values or []]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers") from None
