"""Checks of every field a request carries: each failure is a ServiceError whose sentence
names the field, what it must be and, for limits, the limit's configuration key and value.
Everything but the described game's size is checked before the request takes a slot; the
token and player counts (and given token scores) once the target has described the
instance, before any scoring. Caller values are quoted only through ``shown`` (capped)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from multishap.v1 import common_pb2, explainer_pb2

from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, ResourceExhausted, shown
from multishap.service.math.estimators import INDICES, METHODS
from multishap.service.math.validation import check_grid

BUILT_IN_EXPLAINERS = ("multishap", "random", "shapley")
DEFAULT_STEPS = 10
DEFAULT_CHUNKS = 6
DEFAULT_EPS = 0.05
MAX_PARAMETER_CHARS = 256
MAX_TEXT_MASK_CHARS = 64
MAX_BLUR_RADIUS = 1000.0


def _over(subject: str, key: str, limit: int) -> ResourceExhausted:
    return ResourceExhausted(f"{subject}, over this server's limit {key} = {limit}", limit=key)


def check_grid_limits(grid: common_pb2.Grid, limits: Limits) -> None:
    """Rows and columns each in 1..max_grid_side, and rows x cols at most max_patches."""
    rows, cols = grid.rows, grid.cols
    check_grid(rows, cols)
    if max(rows, cols) > limits.max_grid_side:
        raise _over(f"the patch grid {rows}x{cols} has a side of {max(rows, cols)}", "max_grid_side",
                    limits.max_grid_side)
    if rows * cols > limits.max_patches:
        raise _over(f"the patch grid {rows}x{cols} has {rows * cols} patches", "max_patches", limits.max_patches)


def check_instance_fields(instance: common_pb2.Instance, limits: Limits) -> None:
    """Text, grid, masking and parameters (everything but the image bytes)."""
    if not instance.text.strip():
        raise InvalidArgument("the instance has no text: give the question, caption or prompt")
    if len(instance.text) > limits.max_text_chars:
        raise _over(f"the text has {len(instance.text)} characters", "max_text_chars", limits.max_text_chars)
    if len(instance.target) > limits.max_text_chars:
        raise _over(f"the target answer has {len(instance.target)} characters", "max_text_chars",
                    limits.max_text_chars)
    check_grid_limits(instance.grid, limits)
    _check_masking(instance.masking)
    params = instance.parameters
    if len(params) > limits.max_parameters:
        raise _over(f"the instance has {len(params)} parameters", "max_parameters", limits.max_parameters)
    for key, value in params.items():
        if len(key) > MAX_PARAMETER_CHARS or len(value) > MAX_PARAMETER_CHARS:
            raise InvalidArgument(f"parameter {shown(key)} is too long: keys and values hold at most "
                                  f"{MAX_PARAMETER_CHARS} characters")


def _check_masking(masking: common_pb2.MaskingOptions) -> None:
    if masking.image_baseline not in common_pb2.ImageBaseline.values():
        known = ", ".join(common_pb2.ImageBaseline.keys())
        raise InvalidArgument(f"image_baseline {masking.image_baseline} is not one of {known}")
    radius = masking.blur_radius
    if not math.isfinite(radius) or not 0 <= radius <= MAX_BLUR_RADIUS:
        raise InvalidArgument(f"blur_radius must be a number of pixels from 0 to {MAX_BLUR_RADIUS:g}; got {radius!r}")
    if len(masking.text_mask) > MAX_TEXT_MASK_CHARS:
        raise InvalidArgument(f"text_mask holds at most {MAX_TEXT_MASK_CHARS} characters; got {len(masking.text_mask)}")


def check_players(num_patches: int, num_tokens: int, limits: Limits) -> None:
    """The described game's size: tokens at most max_tokens, players at most max_players."""
    if num_tokens > limits.max_tokens:
        raise _over(f"the text has {num_tokens} tokens", "max_tokens", limits.max_tokens)
    if num_patches + num_tokens > limits.max_players:
        raise _over(f"the game has {num_patches} patches + {num_tokens} tokens = {num_patches + num_tokens} players",
                    "max_players", limits.max_players)


def check_coalition_count(count: int, limits: Limits) -> None:
    """One Score request holds at most max_budget coalitions, and its reply (8 bytes each)
    must fit max_message_bytes."""
    if count > limits.max_budget:
        raise _over(f"the request has {count} coalitions", "max_budget", limits.max_budget)
    if 8 * count + 1024 > limits.max_message_bytes:
        raise _over(f"the reply to {count} coalitions would take {8 * count} bytes", "max_message_bytes",
                    limits.max_message_bytes)


def check_budget(requested: int, limits: Limits) -> int:
    """The budget to use: 0 means the server's default_budget; over max_budget is refused."""
    if requested == 0:
        return limits.default_budget
    if requested > limits.max_budget:
        raise _over(f"budget {requested} coalitions", "max_budget", limits.max_budget)
    return requested


def _choice(name: str, value: str, choices: tuple[str, ...], default: str) -> str:
    """``value`` matched case-insensitively against ``choices`` (empty: ``default``)."""
    if not value:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise InvalidArgument(f"{name} must be one of {', '.join(choices)}; got {shown(value)}")


@dataclass(frozen=True)
class ExplainOptions:
    """An Explain request's options with defaults applied."""

    method: str
    index: str
    budget: int


def explain_options(method: str, index: str, budget: int, limits: Limits) -> ExplainOptions:
    """Method and index (any case) and the budget, checked."""
    return ExplainOptions(method=_choice("method", method, METHODS, "auto"),
                          index=_choice("index", index, INDICES, "SII"),
                          budget=check_budget(budget, limits))


@dataclass(frozen=True)
class FaithfulnessOptions:
    """A Faithfulness request's options with defaults applied."""

    explainer: str         # "" when the request gives its own scores
    steps: int
    chunks: int
    eps: float
    budget: int


def faithfulness_options(request: explainer_pb2.FaithfulnessRequest, limits: Limits) -> FaithfulnessOptions:
    """Explainer, steps, chunks, eps, budget and given scores of a FaithfulnessRequest, checked
    (the token scores' count against the target's tokens only once it has described them)."""
    given = bool(request.patch_scores or request.token_scores)
    for name in ("patch_scores", "token_scores"):
        scores = getattr(request, name)
        if len(scores) > limits.max_scores:
            raise _over(f"{name} has {len(scores)} values", "max_scores", limits.max_scores)
        if not all(math.isfinite(s) for s in scores):
            raise InvalidArgument(f"{name} contains NaN or infinity; every score must be finite")
    patches = request.instance.grid.rows * request.instance.grid.cols
    if given and len(request.patch_scores) != patches:
        raise InvalidArgument(f"the {request.instance.grid.rows}x{request.instance.grid.cols} grid has {patches} "
                              f"patches, but the request gives {len(request.patch_scores)} patch scores")
    explainer = "" if given else _choice("explainer", request.explainer, BUILT_IN_EXPLAINERS, "multishap")
    steps = request.steps or DEFAULT_STEPS
    if steps > limits.max_steps:
        raise _over(f"steps {steps}", "max_steps", limits.max_steps)
    chunks = request.chunks or DEFAULT_CHUNKS
    if chunks > limits.max_chunks:
        raise _over(f"chunks {chunks}", "max_chunks", limits.max_chunks)
    if request.macro_game and (steps + 1) << (2 + chunks) > limits.max_budget:
        raise _over(f"the macro game at {steps} steps and {chunks} chunks scores up to "
                    f"{(steps + 1) << (2 + chunks)} coalitions", "max_budget", limits.max_budget)
    eps = request.eps
    if not math.isfinite(eps) or eps < 0:
        raise InvalidArgument(f"eps must be a positive number (the normaliser's floor), or 0 for {DEFAULT_EPS}; "
                              f"got {eps!r}")
    return FaithfulnessOptions(explainer=explainer, steps=steps, chunks=chunks, eps=eps or DEFAULT_EPS,
                               budget=check_budget(request.budget, limits))


def check_scores_match(patch_scores: Sequence[float], token_scores: Sequence[float], num_patches: int,
                       num_tokens: int) -> None:
    """Given scores must have one value per patch and one per token of the described game."""
    if len(patch_scores) != num_patches or len(token_scores) != num_tokens:
        raise InvalidArgument(f"the instance has {num_patches} patches and {num_tokens} tokens, but the request "
                              f"gives {len(patch_scores)} patch scores and {len(token_scores)} token scores")
