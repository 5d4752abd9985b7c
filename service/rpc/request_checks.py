"""Checks of the fields both servers receive (the instance, the described game, coalition counts):
each failure is a ServiceError whose sentence names the field, what it must be and, for limits,
the limit's configuration key and value. Caller values are quoted only through ``shown`` (capped).
The explainer's own request options are checked in :mod:`multishap.service.explainer.options`."""

from __future__ import annotations

import math
import unicodedata
from typing import Sequence

from multishap.service.audit.answers import normalise_answer
from multishap.service.math.validation import check_grid
from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, ResourceExhausted, shown
from multishap.v1 import common_pb2

MAX_PARAMETER_CHARS = 256
MAX_TEXT_MASK_CHARS = 64
MAX_BLUR_RADIUS = 1000.0


def over_limit(subject: str, key: str, limit: int) -> ResourceExhausted:
    """The refusal of a value over a configured limit, naming the limit's key and value."""
    return ResourceExhausted(f"{subject}, over this server's limit {key} = {limit}", limit=key)


def check_grid_limits(grid: common_pb2.Grid, limits: Limits) -> None:
    """Rows and columns each in 1..max_grid_side, and rows x cols at most max_patches."""
    rows, cols = grid.rows, grid.cols
    check_grid(rows, cols)
    if max(rows, cols) > limits.max_grid_side:
        raise over_limit(f"the patch grid {rows}x{cols} has a side of {max(rows, cols)}", "max_grid_side",
                    limits.max_grid_side)
    if rows * cols > limits.max_patches:
        raise over_limit(f"the patch grid {rows}x{cols} has {rows * cols} patches", "max_patches", limits.max_patches)


def check_instance_fields(instance: common_pb2.Instance, limits: Limits) -> None:
    """Text, grid, masking and parameters (everything but the image bytes)."""
    if not instance.text.strip():
        raise InvalidArgument("the instance has no text: give the question, caption or prompt")
    if len(instance.text) > limits.max_text_chars:
        raise over_limit(f"the text has {len(instance.text)} characters", "max_text_chars", limits.max_text_chars)
    if len(instance.target) > limits.max_text_chars:
        raise over_limit(f"the target answer has {len(instance.target)} characters", "max_text_chars",
                    limits.max_text_chars)
    check_grid_limits(instance.grid, limits)
    _check_masking(instance.masking)
    params = instance.parameters
    if len(params) > limits.max_parameters:
        raise over_limit(f"the instance has {len(params)} parameters", "max_parameters", limits.max_parameters)
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


MAX_JOB_CHARS = 128


def unprintable(text: str) -> bool:
    """Whether ``text`` holds a control, formatting or line-separator character (NUL, escapes, bidi overrides,
    zero-width characters)."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in text)


def check_answer_text(what: str, text: str, limits: Limits) -> None:
    """A candidate or ground truth: visible text (not blank, no control or formatting character), at most
    max_text_chars."""
    if len(text) > limits.max_text_chars:
        raise over_limit(f"{what} has {len(text)} characters", "max_text_chars", limits.max_text_chars)
    if not text.strip():
        raise InvalidArgument(f"{what} is blank: give an answer, caption or class")
    if unprintable(text):
        raise InvalidArgument(f"{what} must not contain control or formatting characters")


def check_candidates(candidates: Sequence[str], limits: Limits) -> None:
    """A correctness check's candidates: at most max_candidates, each visible text of at most max_text_chars, no
    two that judging could not tell apart (equal once normalised: case, spaces, edge punctuation, an article)."""
    if len(candidates) > limits.max_candidates:
        raise over_limit(f"the check has {len(candidates)} candidates", "max_candidates", limits.max_candidates)
    seen: dict[str, int] = {}
    for k, candidate in enumerate(candidates):
        check_answer_text(f"candidate {k}", candidate, limits)
        same = seen.setdefault(normalise_answer(candidate), k)
        if same != k:
            raise InvalidArgument(f"candidates {same} and {k} are the same answer once normalised (case, spaces, "
                                  "punctuation, a leading article): give each answer, caption or class once")


def check_job(job: str) -> None:
    """A Score or Answer request's job name: at most MAX_JOB_CHARS visible characters."""
    if len(job) > MAX_JOB_CHARS:
        raise InvalidArgument(f"job holds at most {MAX_JOB_CHARS} characters; got {len(job)}")
    if unprintable(job):
        raise InvalidArgument("job must not contain control or formatting characters")


def check_players(num_patches: int, num_tokens: int, limits: Limits) -> None:
    """The described game's size: tokens at most max_tokens, players at most max_players."""
    if num_tokens > limits.max_tokens:
        raise over_limit(f"the text has {num_tokens} tokens", "max_tokens", limits.max_tokens)
    if num_patches + num_tokens > limits.max_players:
        raise over_limit(f"the game has {num_patches} patches + {num_tokens} tokens = {num_patches + num_tokens} players",
                    "max_players", limits.max_players)


def check_coalition_count(count: int, limits: Limits) -> None:
    """One Score request holds at most max_budget coalitions, and its reply (8 bytes each)
    must fit max_message_bytes."""
    if count > limits.max_budget:
        raise over_limit(f"the request has {count} coalitions", "max_budget", limits.max_budget)
    if 8 * count + 1024 > limits.max_message_bytes:
        raise over_limit(f"the reply to {count} coalitions would take {8 * count} bytes", "max_message_bytes",
                    limits.max_message_bytes)
