"""The Explainer service: thin servicers over the library, scoring through targets.

Every field of a request is checked before it waits for a slot (:mod:`.admission`), the
described game's size once the target has described it, before any scoring
(:mod:`.request_checks`). Each Explain or Faithfulness call runs its
computation in a worker thread whose value function is a target's Score calls; the RPC
streams progress events while it runs, then the result. When the client cancels or its
deadline passes, gRPC's termination callback stops the computation at its next checkpoint
(:mod:`.interrupt`) and cancels the Score calls in flight, and the slot is released.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterator

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from multishap.v1 import common_pb2, explainer_pb2, explainer_pb2_grpc, scorer_pb2

from multishap.service.explainer.admission import Admission
from multishap.service.rpc.config import ExplainerConfig
from multishap.service.rpc.errors import NotFound, shown
from multishap.service.math.estimators import estimate_interactions
from multishap.service.math.attributions import multishap_scores, random_scores, shapley_scores
from multishap.service.math.faithfulness import macro_game_sii, synergistic_faithfulness, unimodal_faithfulness
from multishap.service.rpc.imaging import image_size
from multishap.service.math.interrupt import interruptible
from multishap.service.math.metrics import instance_metrics
from multishap.service.explainer.readiness import ReadinessProbe
from multishap.service.rpc.request_checks import (
    check_instance_fields,
    check_players,
    check_scores_match,
    explain_options,
    faithfulness_options,
)
from multishap.service.rpc.runtime import annotate
from multishap.service.explainer.targets import CallControl, Target
from multishap.service.rpc.convert import matrix_to_proto

EXPLAINER_SERVICE = explainer_pb2.DESCRIPTOR.services_by_name["Explainer"].full_name
Progress = Callable[[int, int], None]
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
        self.forward_passes = Counter(
            "multishap_forward_passes", "Coalitions scored by targets (model forward passes)",
            ["target"], registry=registry,
        )
        self.duration = Histogram(
            "multishap_explain_seconds", "Wall time of Explain and Faithfulness calls", ["rpc"],
            registry=registry, buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self.in_progress = Gauge("multishap_explanations_in_progress", "Explain and Faithfulness calls running",
                                 registry=registry)
        self.queued = Gauge("multishap_explanations_queued", "Explain and Faithfulness calls waiting for a slot",
                            registry=registry)
        self.queued.set_function(lambda: self.admission.waiting)

    def drain(self) -> None:
        """Start shutting down: explanations waiting for a slot, and any new one, are refused."""
        self.admission.close()

    def close(self) -> None:
        self.admission.close()
        self.readiness.close()
        for target in self.targets.values():
            target.close()

    # -- requests -------------------------------------------------------------------------

    def _target(self, name: str) -> Target:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none configured"
            raise NotFound(f"unknown target {shown(name)}; known targets: {known}")
        annotate(target=name)
        return self.targets[name]

    def _check_instance(self, instance: common_pb2.Instance) -> None:
        check_instance_fields(instance, self.limits)
        image_size(instance.image, self.limits.max_image_pixels)

    def _describe(self, target: Target, instance: common_pb2.Instance, control: CallControl) -> scorer_pb2.Players:
        """The target's players, refused when the game is over the player limits."""
        players = target.describe(instance, control)
        check_players(players.grid.rows * players.grid.cols, len(players.tokens), self.limits)
        return players

    def _stream(self, context: grpc.ServicerContext, work: Callable[[CallControl, Progress], object]) -> Iterator:
        """Run ``work`` in a thread once a slot is free; yield Progress messages, then its result."""
        remaining = context.time_remaining()
        control = CallControl(None if remaining is None else time.monotonic() + remaining)
        if not context.add_callback(control.cancel):
            control.cancel()  # the RPC has already ended
        with self.admission.slot(control.deadline, lambda: control.cancelled):
            yield from self._run(control, work)

    def _run(self, control: CallControl, work: Callable[[CallControl, Progress], object]) -> Iterator:
        events: queue.Queue = queue.Queue()
        start = time.monotonic()

        def run() -> None:
            try:
                with interruptible(control.check):
                    result = work(control, lambda done, total: events.put(("progress", done, total)))
                events.put(("done", result))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the RPC thread
                events.put(("error", exc))

        worker = threading.Thread(target=run, name="explain", daemon=True)
        self.in_progress.inc()
        worker.start()
        try:
            while True:
                kind, *payload = events.get()
                if kind == "progress":
                    done, total = payload
                    elapsed = time.monotonic() - start
                    eta = elapsed * (total - done) / done if done else 0.0
                    yield explainer_pb2.Progress(evaluations=done, budget=total, elapsed_seconds=elapsed,
                                                 eta_seconds=max(eta, 0.0))
                elif kind == "done":
                    yield payload[0]
                    return
                else:
                    raise payload[0]
        finally:
            control.cancel()
            worker.join()
            self.in_progress.dec()

    def _events(self, rpc: str, context, work, event_type, result_field: str) -> Iterator:
        """The RPC's stream: progress events, then one event carrying the result."""
        start = time.perf_counter()
        try:
            for item in self._stream(context, work):
                if isinstance(item, explainer_pb2.Progress):
                    yield event_type(progress=item)
                else:
                    annotate(evaluations=item.evaluations)
                    yield event_type(**{result_field: item})
        finally:
            self.duration.labels(rpc=rpc).observe(time.perf_counter() - start)

    def _addresses(self, target: Target) -> list[str]:
        """Adapter addresses, shown to clients only when the operator allows it."""
        return list(target.config.addresses) if self.config.server.expose_addresses else []

    def _target_info(self, target: Target, players) -> explainer_pb2.TargetInfo:
        return explainer_pb2.TargetInfo(
            name=target.name, addresses=self._addresses(target), model_id=players.model_id,
            score_semantics=players.score_semantics, reachable=True,
        )

    def _value_function(self, target: Target, instance, num_players: int, control: CallControl,
                        on_scored: Callable[[int], None] = lambda count: None, dry_run: bool = False):
        """The target's value function; scored coalitions go to /metrics and to ``on_scored``."""
        counter = self.forward_passes.labels(target=target.name)

        def scored(count: int) -> None:
            if not dry_run:
                counter.inc(count)
            on_scored(count)

        return target.value_function(instance, num_players, control, on_scored=scored, dry_run=dry_run)

    def _estimator_batch(self, target: Target) -> int:
        return target.config.max_batch * target.config.max_in_flight

    # -- RPCs -----------------------------------------------------------------------------

    def ListTargets(self, request, context) -> explainer_pb2.ListTargetsResponse:
        reply = explainer_pb2.ListTargetsResponse()
        for name in sorted(self.targets):
            target = self.targets[name]
            reply.targets.add(name=name, addresses=self._addresses(target), reachable=target.reachable)
        return reply

    def Explain(self, request: explainer_pb2.ExplainRequest, context) -> Iterator[explainer_pb2.ExplainEvent]:
        target = self._target(request.target)
        self._check_instance(request.instance)
        options = explain_options(request.method, request.index, request.budget, self.limits)

        def work(control: CallControl, progress: Progress) -> explainer_pb2.Explanation:
            start = time.perf_counter()
            players = self._describe(target, request.instance, control)
            m, n = players.grid.rows * players.grid.cols, len(players.tokens)
            value_fn = self._value_function(target, request.instance, m + n, control, dry_run=request.dry_run)
            try:
                est = estimate_interactions(value_fn, m, n, method=options.method, budget=options.budget,
                                            seed=request.seed, index=options.index,
                                            max_batch=self._estimator_batch(target), progress=progress)
            finally:
                value_fn.close()
            im = instance_metrics(est.phi)
            return explainer_pb2.Explanation(
                phi=matrix_to_proto(est.phi), stderr=matrix_to_proto(est.stderr), tokens=players.tokens,
                grid=players.grid,
                metrics=explainer_pb2.InstanceMetrics(total=im.total, synergy=im.synergy,
                                                      suppression=im.suppression, synergy_ratio=im.synergy_ratio),
                shapley=[] if est.shapley is None else est.shapley.tolist(),
                v_full=est.v_full, v_empty=est.v_empty, v_image_only=est.v_image_only,
                v_text_only=est.v_text_only, modality_interaction=est.modality_interaction,
                evaluations=est.evaluations, seconds=time.perf_counter() - start, seed=request.seed,
                method=est.method, index=est.index, budget=options.budget,
                target=self._target_info(target, players), usage=value_fn.usage, dry_run=request.dry_run,
            )

        yield from self._events("Explain", context, work, explainer_pb2.ExplainEvent, "explanation")

    def Faithfulness(self, request: explainer_pb2.FaithfulnessRequest, context) -> Iterator[explainer_pb2.FaithfulnessEvent]:
        target = self._target(request.target)
        self._check_instance(request.instance)
        options = faithfulness_options(request, self.limits)

        def work(control: CallControl, progress: Progress) -> explainer_pb2.FaithfulnessResult:
            start = time.perf_counter()
            players = self._describe(target, request.instance, control)
            m, n = players.grid.rows * players.grid.cols, len(players.tokens)
            if not options.explainer:
                check_scores_match(request.patch_scores, request.token_scores, m, n)
            scored = [0]

            def tally(count: int) -> None:
                scored[0] += count

            value_fn = self._value_function(target, request.instance, m + n, control, tally)
            try:
                if not options.explainer:
                    a, b = list(request.patch_scores), list(request.token_scores)
                elif options.explainer == "random":
                    a, b = random_scores(m, n, request.seed)
                else:
                    est = estimate_interactions(value_fn, m, n, budget=options.budget, seed=request.seed,
                                                max_batch=self._estimator_batch(target), progress=progress)
                    a, b = multishap_scores(est.phi) if options.explainer == "multishap" else (
                        shapley_scores(est.shapley, m))
                fs = synergistic_faithfulness(value_fn, m, n, a, b, steps=options.steps, eps=options.eps)
                uf = unimodal_faithfulness(value_fn, m, n, a, b, steps=options.steps, eps=options.eps)
                ms = macro_game_sii(value_fn, m, n, a, b, steps=options.steps, chunks=options.chunks,
                                    seed=request.seed) if request.macro_game else None
            finally:
                value_fn.close()
            return explainer_pb2.FaithfulnessResult(
                f_syn=fs.f_syn, f_ins=fs.f_ins, f_del=fs.f_del, f_syn_unclipped=fs.f_syn_unclipped,
                f_syn_raw=fs.f_syn_raw, alphas=fs.alphas.tolist(), curve_ins=fs.curve_ins.tolist(),
                curve_del=fs.curve_del.tolist(),
                visual=explainer_pb2.UnimodalResult(insertion=uf.visual.insertion, deletion=uf.visual.deletion,
                                                    srg=uf.visual.srg),
                text=explainer_pb2.UnimodalResult(insertion=uf.text.insertion, deletion=uf.text.deletion,
                                                  srg=uf.text.srg),
                macro_per_step=[] if ms is None else ms.per_step.tolist(), macro_auc=0.0 if ms is None else ms.auc,
                evaluations=scored[0], patch_scores=list(map(float, a)), token_scores=list(map(float, b)),
                tokens=players.tokens, seconds=time.perf_counter() - start,
                target=self._target_info(target, players), usage=value_fn.usage,
            )

        yield from self._events("Faithfulness", context, work, explainer_pb2.FaithfulnessEvent, "result")

