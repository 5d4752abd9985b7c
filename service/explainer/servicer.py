"""The Explainer servicer: it only translates, request messages to job arguments and outcomes to replies.

Every field of a request is checked before it waits for a slot (:mod:`.options`,
:mod:`multishap.service.rpc.request_checks`); the work runs in :mod:`.jobs` under
:mod:`.streaming`'s admission, threads and progress events; replies are built by
:mod:`multishap.service.rpc.convert`. Errors are raised as plain classes and mapped to status
codes by the interceptor.
"""

from __future__ import annotations

from typing import Callable, Iterator

import grpc
from prometheus_client import CollectorRegistry, Counter

from multishap.service.explainer.admission import Admission
from multishap.service.explainer.jobs import Call, Jobs, Progress
from multishap.service.explainer.options import explain_options, faithfulness_options
from multishap.service.explainer.readiness import ReadinessProbe
from multishap.service.explainer.streaming import EventStreams, Work
from multishap.service.explainer.targets import CallControl, Target
from multishap.service.rpc.config import ExplainerConfig
from multishap.service.rpc.convert import explanation_to_proto, faithfulness_to_proto, influence_to_proto
from multishap.service.rpc.errors import NotFound, shown
from multishap.service.rpc.imaging import image_size
from multishap.service.rpc.request_checks import check_instance_fields
from multishap.service.rpc.runtime import annotate
from multishap.v1 import explainer_pb2, explainer_pb2_grpc, scorer_pb2

EXPLAINER_SERVICE = explainer_pb2.DESCRIPTOR.services_by_name["Explainer"].full_name
# Threads beyond the explanations running and waiting, so that health checks and
# ListTargets always find one.
SPARE_RPC_THREADS = 16


class ExplainerServicer(explainer_pb2_grpc.ExplainerServicer):
    """ListTargets, Explain and Faithfulness over the configured targets."""

    def __init__(self, config: ExplainerConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.limits = config.limits
        self.targets = {name: Target(t, self.limits.max_message_bytes) for name, t in config.targets.items()}
        self.admission = Admission(self.limits.max_concurrent_explanations, self.limits.max_queued_explanations,
                                   self.limits.max_queue_wait_s)
        self.readiness = ReadinessProbe(self.targets.values(), EXPLAINER_SERVICE, config.server.probe_interval_s)
        self.streams = EventStreams(self.admission, registry)
        self.jobs = Jobs(self.limits, Counter(
            "multishap_forward_passes", "Coalitions scored by targets (model forward passes)",
            ["target"], registry=registry,
        ), Counter(
            "multishap_cost_units", "What explanations spent at targets, in each target's cost unit "
            "(encoder passes, requests or coalitions)", ["target", "unit"], registry=registry,
        ))
        self._on_drain: list[Callable[[], None]] = []
        self._on_close: list[Callable[[], None]] = []

    def on_shutdown(self, drain: Callable[[], None], close: Callable[[], None]) -> None:
        """Also call ``drain`` when the server starts shutting down and ``close`` when it has stopped
        (the job runner and the job store)."""
        self._on_drain.append(drain)
        self._on_close.insert(0, close)

    def drain(self) -> None:
        """Start shutting down: explanations waiting for a slot, and any new one, are refused."""
        self.admission.close()
        for hook in self._on_drain:
            hook()

    def close(self) -> None:
        self.admission.close()
        for hook in self._on_close:
            hook()
        self.readiness.close()
        for target in self.targets.values():
            target.close()

    def _target(self, name: str) -> Target:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none configured"
            raise NotFound(f"unknown target {shown(name)}; known targets: {known}")
        annotate(target=name)
        return self.targets[name]

    def _checked(self, request) -> Target:
        """The request's target, once its instance's fields and image header are within the limits."""
        target = self._target(request.target)
        check_instance_fields(request.instance, self.limits)
        image_size(request.instance.image, self.limits.max_image_pixels)
        return target

    def _addresses(self, target: Target) -> list[str]:
        """Adapter addresses, shown to clients only when the operator allows it."""
        return list(target.config.addresses) if self.config.server.expose_addresses else []

    def _target_info(self, target: Target, players: scorer_pb2.Players) -> explainer_pb2.TargetInfo:
        return explainer_pb2.TargetInfo(
            name=target.name, addresses=self._addresses(target), model_id=players.model_id,
            score_semantics=players.score_semantics, reachable=True, caps=players.caps,
        )

    def ListTargets(self, request, context) -> explainer_pb2.ListTargetsResponse:
        reply = explainer_pb2.ListTargetsResponse()
        for name in sorted(self.targets):
            target = self.targets[name]
            reply.targets.add(name=name, addresses=self._addresses(target), reachable=target.reachable)
        return reply

    def explain_work(self, request: explainer_pb2.ExplainRequest) -> Work:
        """Check every field of ``request`` and return the work that answers it (streamed or run as a job)."""
        target = self._checked(request)
        options = explain_options(request, self.limits)

        def work(control: CallControl, progress: Progress) -> explainer_pb2.Explanation:
            done = self.jobs.explain(Call(target, request.instance, control, progress), options,
                                     request.seed, request.dry_run)
            info = self._target_info(target, done.players)
            msg = explanation_to_proto(done.estimate, done.metrics, done.players, info, done.usage, done.seconds,
                                       options.budget, request.dry_run, budget_unit=options.budget_unit,
                                       target_stderr=options.target_stderr, cost=done.cost, cost_unit=done.cost_unit)
            msg.role = options.role
            parts = done.audited
            if parts.answer is not None:
                msg.answer.CopyFrom(parts.answer)
            if parts.influence is not None:
                msg.influence.CopyFrom(influence_to_proto(parts.influence))
            if (f := parts.faithfulness) is not None:
                msg.faithfulness.CopyFrom(faithfulness_to_proto(f.synergy, f.unimodal, None, f.patch_scores,
                                                                f.token_scores, f.players, info, f.usage,
                                                                f.evaluations, f.seconds))
            return msg

        return work

    def faithfulness_work(self, request: explainer_pb2.FaithfulnessRequest) -> Work:
        """Check every field of ``request`` and return the work that answers it (streamed or run as a job)."""
        target = self._checked(request)
        options = faithfulness_options(request, self.limits)

        def work(control: CallControl, progress: Progress) -> explainer_pb2.FaithfulnessResult:
            done = self.jobs.faithfulness(Call(target, request.instance, control, progress), options,
                                          (request.patch_scores, request.token_scores), request.seed,
                                          request.macro_game)
            return faithfulness_to_proto(done.synergy, done.unimodal, done.macro, done.patch_scores,
                                         done.token_scores, done.players, self._target_info(target, done.players),
                                         done.usage, done.evaluations, done.seconds)

        return work

    def Explain(self, request: explainer_pb2.ExplainRequest,
                context: grpc.ServicerContext) -> Iterator[explainer_pb2.ExplainEvent]:
        work = self.explain_work(request)
        yield from self.streams.events("Explain", context, work, explainer_pb2.ExplainEvent, "explanation")

    def Faithfulness(self, request: explainer_pb2.FaithfulnessRequest,
                     context: grpc.ServicerContext) -> Iterator[explainer_pb2.FaithfulnessEvent]:
        work = self.faithfulness_work(request)
        yield from self.streams.events("Faithfulness", context, work, explainer_pb2.FaithfulnessEvent, "result")
