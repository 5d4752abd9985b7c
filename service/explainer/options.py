"""The Explain and Faithfulness requests' options, checked and with defaults applied.

Everything here is checked before the request takes a slot; given token scores against the
described game once the target has described the instance, before any scoring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from multishap.service import defaults
from multishap.service.audit import ROLES
from multishap.service.math.attributions import BUILT_IN_EXPLAINERS
from multishap.service.math.estimators import INDICES, METHODS
from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument, shown
from multishap.service.rpc.request_checks import check_answer_text, check_candidates, over_limit
from multishap.v1 import explainer_pb2


def check_budget(requested: int, limits: Limits) -> int:
    """The budget to use: 0 means the server's default_budget; over max_budget is refused."""
    if requested == 0:
        return limits.default_budget
    if requested > limits.max_budget:
        raise over_limit(f"budget {requested} coalitions", "max_budget", limits.max_budget)
    return requested


def _choice(name: str, value: str, choices: tuple[str, ...], default: str) -> str:
    """``value`` matched case-insensitively against ``choices`` (empty: ``default``)."""
    if not value:
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise InvalidArgument(f"{name} must be one of {', '.join(choices)}; got {shown(value)}")


MIN_INFLUENCE_BUDGET = 16  # four one-modality games of at least 4 coalitions; the game's size may need more


@dataclass(frozen=True)
class AnswerCheck:
    """A correctness check: the candidates the model chooses among (empty: its own answer) and the ground truth
    (empty: the answer is recorded, not judged)."""

    candidates: tuple[str, ...]
    ground_truth: str


@dataclass(frozen=True)
class ExplainOptions:
    """An Explain request's options with defaults applied, and the audit parts it asks for."""

    method: str
    index: str
    budget: int
    budget_unit: int = explainer_pb2.BUDGET_UNIT_COALITIONS
    target_stderr: float = 0.0   # 0: spend the budget
    check: Optional[AnswerCheck] = None
    influence_budget: int = 0    # 0: no modality influence
    faithfulness: bool = False
    role: str = ""

    @property
    def counts_cost(self) -> bool:
        """Whether the budget is in the target's cost unit rather than in coalitions."""
        return self.budget_unit == explainer_pb2.BUDGET_UNIT_COST


def check_target_stderr(value: float) -> float:
    """A target standard error: a finite number >= 0 (0: none)."""
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"target_stderr must be a finite number >= 0 (0: spend the budget); got {value!r}")
    return value


def check_budget_unit(value: int) -> int:
    """A BudgetUnit the server knows (an unknown enum number is refused, not read as coalitions)."""
    if value not in explainer_pb2.BudgetUnit.values():
        known = ", ".join(explainer_pb2.BudgetUnit.keys())
        raise InvalidArgument(f"budget_unit must be one of {known}; got {value!r}")
    return value


def check_answer_check(request: explainer_pb2.ExplainRequest, limits: Limits) -> Optional[AnswerCheck]:
    """The request's correctness check, its candidates and ground truth within the limits; None when unset."""
    if not request.HasField("check"):
        return None
    check = request.check
    check_candidates(check.candidates, limits)
    if check.ground_truth:
        check_answer_text("the ground truth", check.ground_truth, limits)
    return AnswerCheck(tuple(check.candidates), check.ground_truth)


def check_influence_budget(requested: int, limits: Limits) -> int:
    """Coalitions for modality influence: 0 (none), or from MIN_INFLUENCE_BUDGET to max_budget."""
    if requested == 0:
        return 0
    if requested < MIN_INFLUENCE_BUDGET:
        raise InvalidArgument(f"influence_budget must be 0 (none) or at least {MIN_INFLUENCE_BUDGET} coalitions; "
                              f"got {requested}")
    if requested > limits.max_budget:
        raise over_limit(f"influence_budget {requested} coalitions", "max_budget", limits.max_budget)
    return requested


def check_role(role: str) -> str:
    """An explanation's role: "true", "foil" or empty."""
    if role and role not in ROLES:
        raise InvalidArgument(f"role must be 'true', 'foil' or empty; got {shown(role)}")
    return role


def explain_options(request: explainer_pb2.ExplainRequest, limits: Limits) -> ExplainOptions:
    """Method and index (any case), the budget and its unit, the target standard error and the audit parts,
    checked; a dry run takes no audit part (it estimates what scoring Φ costs, and nothing else)."""
    if request.dry_run and (request.HasField("check") or request.influence_budget or request.faithfulness):
        raise InvalidArgument("a dry run estimates only what scoring Φ costs: ask for the check, influence_budget "
                              "or faithfulness without dry_run")
    return ExplainOptions(method=_choice("method", request.method, METHODS, defaults.METHOD),
                          index=_choice("index", request.index, INDICES, defaults.INDEX),
                          budget=check_budget(request.budget, limits),
                          budget_unit=check_budget_unit(request.budget_unit),
                          target_stderr=check_target_stderr(request.target_stderr),
                          check=check_answer_check(request, limits),
                          influence_budget=check_influence_budget(request.influence_budget, limits),
                          faithfulness=request.faithfulness, role=check_role(request.role))


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
            raise over_limit(f"{name} has {len(scores)} values", "max_scores", limits.max_scores)
        if not all(math.isfinite(s) for s in scores):
            raise InvalidArgument(f"{name} contains NaN or infinity; every score must be finite")
    patches = request.instance.grid.rows * request.instance.grid.cols
    if given and len(request.patch_scores) != patches:
        raise InvalidArgument(f"the {request.instance.grid.rows}x{request.instance.grid.cols} grid has {patches} "
                              f"patches, but the request gives {len(request.patch_scores)} patch scores")
    explainer = "" if given else _choice("explainer", request.explainer, BUILT_IN_EXPLAINERS, defaults.FAITHFULNESS_EXPLAINER)
    steps = request.steps or defaults.FAITHFULNESS_STEPS
    if steps > limits.max_steps:
        raise over_limit(f"steps {steps}", "max_steps", limits.max_steps)
    chunks = request.chunks or defaults.MACRO_CHUNKS
    if chunks > limits.max_chunks:
        raise over_limit(f"chunks {chunks}", "max_chunks", limits.max_chunks)
    if request.macro_game and (steps + 1) << (2 + chunks) > limits.max_budget:
        raise over_limit(f"the macro game at {steps} steps and {chunks} chunks scores up to "
                    f"{(steps + 1) << (2 + chunks)} coalitions", "max_budget", limits.max_budget)
    eps = request.eps
    if not math.isfinite(eps) or eps < 0:
        raise InvalidArgument(f"eps must be a positive number (the normaliser's floor), or 0 for {defaults.FAITHFULNESS_EPS}; "
                              f"got {eps!r}")
    return FaithfulnessOptions(explainer=explainer, steps=steps, chunks=chunks, eps=eps or defaults.FAITHFULNESS_EPS,
                               budget=check_budget(request.budget, limits))


def check_scores_match(patch_scores: Sequence[float], token_scores: Sequence[float], num_patches: int,
                       num_tokens: int) -> None:
    """Given scores must have one value per patch and one per token of the described game."""
    if len(patch_scores) != num_patches or len(token_scores) != num_tokens:
        raise InvalidArgument(f"the instance has {num_patches} patches and {num_tokens} tokens, but the request "
                              f"gives {len(patch_scores)} patch scores and {len(token_scores)} token scores")
