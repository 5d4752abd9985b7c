"""The job layer: one Explain or Faithfulness computation, from the target's description to the math's results.

A job describes the instance at its target, refuses a game over the player limits, and runs
the estimator or the faithfulness metrics on the target's Score calls. An explanation's
estimator deduplicates its own coalitions; a faithfulness job wraps the Score calls in one
:class:`MemoisedValueFunction`, so its estimate, F_syn, unimodal curves and macro game
score every coalition of the request once, whichever of them asks for it. It knows nothing of gRPC's servicer side
or of the reply messages: those are the servicer's and :mod:`multishap.service.rpc.convert`'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
from prometheus_client import Counter

from multishap.service import defaults
from multishap.service.audit import ModalityInfluence, modality_influence
from multishap.service.audit.influence import min_influence_budget
from multishap.service.audit.answers import is_correct
from multishap.service.explainer.options import (
    AnswerCheck,
    ExplainOptions,
    FaithfulnessOptions,
    check_scores_match,
)
from multishap.service.explainer.targets import CallControl, RemoteValueFunction, Target, TargetUnimplemented
from multishap.service.math.costs import CostMeter, CostModel
from multishap.service.math.attributions import multishap_scores, random_scores, shapley_scores
from multishap.service.math.estimators import InteractionEstimate, estimate_interactions
from multishap.service.math.estimators.coalitions import MemoisedValueFunction
from multishap.service.math.faithfulness import (
    MacroGameSII,
    SynergisticFaithfulness,
    UnimodalFaithfulness,
    macro_game_sii,
    synergistic_faithfulness,
    unimodal_faithfulness,
)
from multishap.service.math.metrics import InstanceMetrics, instance_metrics
from multishap.service.rpc.config import Limits
from multishap.service.rpc.errors import InvalidArgument
from multishap.service.rpc.request_checks import check_players
from multishap.v1 import common_pb2, explainer_pb2, scorer_pb2

# progress(done, total[, cost, cost_unit, budget_unit]): coalitions scored and the budget, then what they
# cost in the target's unit and which unit the budget counts (explanations give all five).
Progress = Callable[..., None]


@dataclass(frozen=True)
class Call:
    """What a job needs of the RPC that runs it: the target, the instance, cancellation and progress."""

    target: Target
    instance: common_pb2.Instance
    control: CallControl
    progress: Progress


@dataclass(frozen=True)
class Answered:
    """The judged answer and what asking for it cost."""

    message: explainer_pb2.ModelAnswer
    usage: common_pb2.Usage


def answer_cost(costs: CostModel, usage: common_pb2.Usage) -> float:
    """What an Answer call cost in the target's unit: its encodes at their prices, and its endpoint requests
    (cache hits included, as a coalition's cost counts them) at a coalition's."""
    return costs.of(usage.requests + usage.cache_hits, usage.image_encodes, usage.text_encodes)


@dataclass(frozen=True)
class AuditedParts:
    """What an explanation's request asked for beyond Φ: the model's answer, modality influence, and F_syn of
    the explanation's MultiSHAP scores (each None when not asked for, and in a dry run)."""

    answer: Optional[explainer_pb2.ModelAnswer] = None
    influence: Optional[ModalityInfluence] = None
    faithfulness: Optional["FaithfulnessOutcome"] = None


@dataclass(frozen=True)
class ExplainOutcome:
    """An explanation: the estimate, its metrics, the described players, what scoring cost and the audit parts."""

    players: scorer_pb2.Players
    estimate: InteractionEstimate
    metrics: InstanceMetrics
    usage: common_pb2.Usage
    seconds: float
    cost: float = 0.0      # what the explanation spent, in cost_unit
    cost_unit: str = ""
    audited: AuditedParts = AuditedParts()


@dataclass(frozen=True)
class FaithfulnessOutcome:
    """Faithfulness of one attribution: the scores judged, F_syn, the unimodal metrics, the macro game."""

    players: scorer_pb2.Players
    patch_scores: np.ndarray
    token_scores: np.ndarray
    synergy: SynergisticFaithfulness
    unimodal: UnimodalFaithfulness
    macro: Optional[MacroGameSII]
    evaluations: int
    usage: common_pb2.Usage
    seconds: float


class Jobs:
    """Runs explanations and faithfulness scores against targets; counts forward passes per target."""

    def __init__(self, limits: Limits, forward_passes: Counter, cost_units: Optional[Counter] = None) -> None:
        self.limits = limits
        self.forward_passes = forward_passes
        self.cost_units = cost_units

    def _describe(self, call: Call) -> tuple[scorer_pb2.Players, int, int]:
        """The target's players and the game's size, refused when over the player limits."""
        players = call.target.describe(call.instance, call.control)
        m, n = players.grid.rows * players.grid.cols, len(players.tokens)
        check_players(m, n, self.limits)
        return players, m, n

    def _value_function(self, call: Call, players: scorer_pb2.Players, num_players: int,
                        dry_run: bool = False) -> RemoteValueFunction:
        """The target's Score calls as a value function; scored coalitions go to /metrics (not in a dry run)."""
        counter = self.forward_passes.labels(target=call.target.name)
        scored = (lambda count: None) if dry_run else counter.inc
        return call.target.value_function(call.instance, num_players, call.control, on_scored=scored,
                                          dry_run=dry_run, players=players)

    def _batch(self, call: Call, remote: RemoteValueFunction) -> int:
        """Coalitions per value-function call: one round of the Score calls the target takes at once, each of
        the size it prefers."""
        return remote.sizing.batch * call.target.config.max_in_flight

    def explain(self, call: Call, options: ExplainOptions, seed: int, dry_run: bool) -> ExplainOutcome:
        """Φ of the instance within the options' budget, and the audit parts the options ask for (a dry run
        selects coalitions and scores none, and computes no audit part).

        The model's answer is asked for first, so a target that refuses the check (INVALID_ARGUMENT) fails the
        request before any budget is spent; one that cannot answer leaves the reason in the answer's error.
        """
        start = time.perf_counter()
        players, m, n = self._describe(call)
        if options.influence_budget and options.influence_budget < (needed := min_influence_budget(m, n)):
            raise InvalidArgument(f"influence_budget {options.influence_budget} is too small for modality influence "
                                  f"on {m} patches and {n} tokens: it needs at least {needed} coalitions")
        remote = self._value_function(call, players, m + n, dry_run)
        meter = CostMeter(remote, m, max_coalitions=self.limits.max_coalitions)

        def progress(done: int, total: int) -> None:
            call.progress(meter.coalitions, options.budget, meter.spent, meter.costs.unit, options.budget_unit)

        audit = not dry_run
        try:
            answer = self._answer(call, options.check, remote) if audit and options.check else None
            estimate = estimate_interactions(
                meter, m, n, method=options.method, budget=options.budget, seed=seed, index=options.index,
                max_batch=self._batch(call, remote), progress=progress, target_stderr=options.target_stderr or None,
                budget_unit="cost" if options.counts_cost else "coalitions")
            influence = (modality_influence(meter, m, n, budget=options.influence_budget, seed=seed)
                         if audit and options.influence_budget else None)
            faithfulness = (self._own_faithfulness(call, meter, remote, players, estimate.phi)
                            if audit and options.faithfulness else None)
        finally:
            remote.close()
        cost = meter.spent + (answer_cost(meter.costs, answer.usage) if answer is not None else 0.0)
        if self.cost_units is not None and not dry_run:
            self.cost_units.labels(target=call.target.name, unit=meter.costs.unit).inc(cost)
        return ExplainOutcome(players=players, estimate=estimate, metrics=instance_metrics(estimate.phi),
                              usage=remote.usage, seconds=time.perf_counter() - start, cost=cost,
                              cost_unit=meter.costs.unit,
                              audited=AuditedParts(answer.message if answer else None, influence, faithfulness))

    @staticmethod
    def _answer(call: Call, check: AnswerCheck, remote: RemoteValueFunction) -> "Answered":
        """The target's own answer, judged against the check's ground truth; a target that cannot answer
        (UNIMPLEMENTED) leaves the reason in ``error``, any other refusal fails the request. Its usage is
        counted in the explanation's."""
        asked = explainer_pb2.ModelAnswer(candidates=check.candidates, ground_truth=check.ground_truth,
                                          judged=bool(check.ground_truth))
        try:
            reply = call.target.answer(call.instance, check.candidates, remote.job, call.control)
        except TargetUnimplemented as err:
            asked.judged = False
            asked.error = str(err)
            return Answered(asked, common_pb2.Usage())
        remote.add_usage(reply.usage)
        asked.answer, asked.raw, asked.how = reply.answer, reply.raw, reply.how
        asked.scores.extend(reply.scores)
        if not reply.answer:
            asked.judged = False
            asked.error = f"the target gave no answer ({reply.how or 'empty'}); it is not judged"
        asked.correct = asked.judged and is_correct(reply.answer, check.ground_truth)
        return Answered(asked, reply.usage)

    def _own_faithfulness(self, call: Call, meter: CostMeter, remote: RemoteValueFunction,
                          players: scorer_pb2.Players, phi: np.ndarray) -> "FaithfulnessOutcome":
        """F_syn and the unimodal metrics of the MultiSHAP scores of ``phi``, with the default steps and eps, on
        the explanation's own (memoised) game."""
        start = time.perf_counter()
        m, n = phi.shape
        game = MemoisedValueFunction(meter)
        batch = self._batch(call, remote)
        a, b = multishap_scores(phi)
        steps, eps = defaults.FAITHFULNESS_STEPS, defaults.FAITHFULNESS_EPS
        synergy = synergistic_faithfulness(game, m, n, a, b, steps=steps, eps=eps, max_batch=batch)
        unimodal = unimodal_faithfulness(game, m, n, a, b, steps=steps, eps=eps, max_batch=batch)
        return FaithfulnessOutcome(players=players, patch_scores=np.asarray(a, dtype=np.float64),
                                   token_scores=np.asarray(b, dtype=np.float64), synergy=synergy, unimodal=unimodal,
                                   macro=None, evaluations=game.evaluations, usage=common_pb2.Usage(),
                                   seconds=time.perf_counter() - start)

    def _attribution(self, options: FaithfulnessOptions, game: MemoisedValueFunction, call: Call, m: int, n: int,
                     given: tuple[Sequence[float], Sequence[float]], seed: int,
                     batch: int) -> tuple[np.ndarray, np.ndarray]:
        """The patch and token scores to judge: the request's own, or a built-in explainer's on the same game."""
        if not options.explainer:
            return np.asarray(given[0], dtype=np.float64), np.asarray(given[1], dtype=np.float64)
        if options.explainer == "random":
            return random_scores(m, n, seed)
        # The Shapley explainer needs the players' Shapley values, which `kernel` yields.
        method = "auto" if options.explainer == "multishap" else "kernel"
        estimate = estimate_interactions(game, m, n, method=method, budget=options.budget, seed=seed,
                                         max_batch=batch, progress=call.progress)
        if options.explainer == "multishap":
            return multishap_scores(estimate.phi)
        return shapley_scores(estimate.shapley, m)

    def faithfulness(self, call: Call, options: FaithfulnessOptions, given: tuple[Sequence[float], Sequence[float]],
                     seed: int, macro_game: bool) -> FaithfulnessOutcome:
        """F_syn, the unimodal metrics and (optionally) the macro game of one attribution, on one memoised game."""
        start = time.perf_counter()
        players, m, n = self._describe(call)
        if not options.explainer:
            check_scores_match(given[0], given[1], m, n)
        remote = self._value_function(call, players, m + n)
        game = MemoisedValueFunction(remote)
        batch = self._batch(call, remote)
        try:
            a, b = self._attribution(options, game, call, m, n, given, seed, batch)
            synergy = synergistic_faithfulness(game, m, n, a, b, steps=options.steps, eps=options.eps,
                                               max_batch=batch)
            unimodal = unimodal_faithfulness(game, m, n, a, b, steps=options.steps, eps=options.eps, max_batch=batch)
            macro = macro_game_sii(game, m, n, a, b, steps=options.steps, chunks=options.chunks, seed=seed,
                                   max_batch=batch) if macro_game else None
        finally:
            remote.close()
        return FaithfulnessOutcome(players=players, patch_scores=np.asarray(a, dtype=np.float64),
                                   token_scores=np.asarray(b, dtype=np.float64), synergy=synergy, unimodal=unimodal,
                                   macro=macro, evaluations=game.evaluations, usage=remote.usage,
                                   seconds=time.perf_counter() - start)
