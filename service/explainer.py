"""The Explainer service: thin servicers over the library, scoring through targets.

Each Explain or Faithfulness call runs its computation in a worker thread whose value
function is a target's Score calls; the RPC streams progress events while it runs, then
the result. When the client cancels or its deadline passes, gRPC's termination callback
stops the work at the next batch and cancels the Score calls in flight.
"""

from __future__ import annotations

import io
import queue
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from multishap.v1 import common_pb2, explainer_pb2, explainer_pb2_grpc

from .config import ExplainerConfig
from .errors import InvalidArgument, NotFound, ResourceExhausted
from .estimators import estimate_interactions
from .explainers import multishap_scores, random_scores, shapley_scores
from .faithfulness import macro_game_sii, synergistic_faithfulness, unimodal_faithfulness
from .metrics import instance_metrics
from .runtime import RunningServer, start_server
from .targets import CallControl, Target
from .validation import check_grid
from .wire import matrix_to_proto

EXPLAINER_SERVICE = explainer_pb2.DESCRIPTOR.services_by_name["Explainer"].full_name
BUILT_IN_EXPLAINERS = ("multishap", "random", "shapley")
Progress = Callable[[int, int], None]


class ExplainerServicer(explainer_pb2_grpc.ExplainerServicer):
    """ListTargets, Explain and Faithfulness over the configured targets."""

    def __init__(self, config: ExplainerConfig, registry: CollectorRegistry) -> None:
        self.config = config
        self.limits = config.limits
        self.targets = {name: Target(t, self.limits.max_message_bytes) for name, t in config.targets.items()}
        self._slots = threading.BoundedSemaphore(self.limits.max_concurrent_explanations)
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

    def close(self) -> None:
        for target in self.targets.values():
            target.close()

    # -- requests -------------------------------------------------------------------------

    def _target(self, name: str) -> Target:
        if name not in self.targets:
            known = ", ".join(sorted(self.targets)) or "none configured"
            raise NotFound(f"unknown target {name!r}; known targets: {known}")
        return self.targets[name]

    def _check_instance(self, instance: common_pb2.Instance) -> None:
        if not instance.text.strip():
            raise InvalidArgument("the instance has no text: give the question, caption or prompt")
        check_grid(instance.grid.rows, instance.grid.cols)
        try:
            with Image.open(io.BytesIO(instance.image)) as img:
                width, height = img.size
        except Exception as exc:  # noqa: BLE001 - any decoder failure is the caller's input
            raise InvalidArgument(f"the image could not be decoded ({type(exc).__name__}: {exc})") from exc
        if width * height > self.limits.max_image_pixels:
            raise ResourceExhausted(
                f"the image has {width}x{height} = {width * height} pixels, over this server's limit "
                f"of {self.limits.max_image_pixels}"
            )

    def _budget(self, requested: int) -> int:
        if requested < 1:
            raise InvalidArgument("budget must be at least 1 coalition")
        if requested > self.limits.max_budget:
            raise ResourceExhausted(
                f"budget {requested} is over this server's limit of {self.limits.max_budget} coalitions"
            )
        return requested

    @contextmanager
    def _slot(self, rpc: str):
        if not self._slots.acquire(blocking=False):
            raise ResourceExhausted(
                f"the server is already running {self.limits.max_concurrent_explanations} explanations, "
                "its limit; try again when one finishes"
            )
        self.in_progress.inc()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.duration.labels(rpc=rpc).observe(time.perf_counter() - start)
            self.in_progress.dec()
            self._slots.release()

    def _stream(self, context: grpc.ServicerContext, work: Callable[[CallControl, Progress], object]) -> Iterator:
        """Run ``work`` in a thread; yield Progress messages, then its result."""
        remaining = context.time_remaining()
        control = CallControl(None if remaining is None else time.monotonic() + remaining)
        context.add_callback(control.cancel)
        events: queue.Queue = queue.Queue()
        start = time.monotonic()

        def run() -> None:
            try:
                events.put(("done", work(control, lambda done, total: events.put(("progress", done, total)))))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the RPC thread
                events.put(("error", exc))

        worker = threading.Thread(target=run, name="explain", daemon=True)
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

    def _events(self, rpc: str, context, work, event_type, result_field: str) -> Iterator:
        """The RPC's stream: progress events, then one event carrying the result."""
        with self._slot(rpc):
            for item in self._stream(context, work):
                if isinstance(item, explainer_pb2.Progress):
                    yield event_type(progress=item)
                else:
                    yield event_type(**{result_field: item})

    def _target_info(self, target: Target, players) -> explainer_pb2.TargetInfo:
        return explainer_pb2.TargetInfo(
            name=target.name, addresses=target.config.addresses, model_id=players.model_id,
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
            reply.targets.add(name=name, addresses=target.config.addresses, reachable=_reachable(target))
        return reply

    def Explain(self, request: explainer_pb2.ExplainRequest, context) -> Iterator[explainer_pb2.ExplainEvent]:
        target = self._target(request.target)
        self._check_instance(request.instance)
        budget = self._budget(request.budget)
        method, index = request.method or "auto", request.index or "SII"

        def work(control: CallControl, progress: Progress) -> explainer_pb2.Explanation:
            start = time.perf_counter()
            players = target.describe(request.instance, control)
            m, n = players.grid.rows * players.grid.cols, len(players.tokens)
            value_fn = self._value_function(target, request.instance, m + n, control, dry_run=request.dry_run)
            try:
                est = estimate_interactions(value_fn, m, n, method=method, budget=budget, seed=request.seed,
                                            index=index, max_batch=self._estimator_batch(target), progress=progress)
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
                method=est.method, index=est.index, budget=budget, target=self._target_info(target, players),
                usage=value_fn.usage, dry_run=request.dry_run,
            )

        yield from self._events("Explain", context, work, explainer_pb2.ExplainEvent, "explanation")

    def Faithfulness(self, request: explainer_pb2.FaithfulnessRequest, context) -> Iterator[explainer_pb2.FaithfulnessEvent]:
        target = self._target(request.target)
        self._check_instance(request.instance)
        given = bool(request.patch_scores or request.token_scores)
        explainer = request.explainer or "multishap"
        if not given and explainer not in BUILT_IN_EXPLAINERS:
            raise InvalidArgument(f"explainer must be one of {BUILT_IN_EXPLAINERS}, or give patch and token scores")
        budget = self._budget(request.budget or self.limits.default_budget)
        steps, chunks = request.steps or 10, request.chunks or 6
        eps = request.eps or 0.05

        def work(control: CallControl, progress: Progress) -> explainer_pb2.FaithfulnessResult:
            start = time.perf_counter()
            players = target.describe(request.instance, control)
            m, n = players.grid.rows * players.grid.cols, len(players.tokens)
            scored = [0]

            def tally(count: int) -> None:
                scored[0] += count

            value_fn = self._value_function(target, request.instance, m + n, control, tally)
            try:
                if given:
                    a, b = list(request.patch_scores), list(request.token_scores)
                elif explainer == "random":
                    a, b = random_scores(m, n, request.seed)
                else:
                    est = estimate_interactions(value_fn, m, n, budget=budget, seed=request.seed,
                                                max_batch=self._estimator_batch(target), progress=progress)
                    a, b = multishap_scores(est.phi) if explainer == "multishap" else shapley_scores(est.shapley, m)
                fs = synergistic_faithfulness(value_fn, m, n, a, b, steps=steps, eps=eps)
                uf = unimodal_faithfulness(value_fn, m, n, a, b, steps=steps, eps=eps)
                ms = macro_game_sii(value_fn, m, n, a, b, steps=steps, chunks=chunks, seed=request.seed) \
                    if request.macro_game else None
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


def _reachable(target: Target, timeout: float = 1.0) -> bool:
    """Whether any replica answers a health check."""
    for address in target.config.addresses:
        with grpc.insecure_channel(address) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
            except grpc.RpcError:
                continue
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return True
    return False


def serve_explainer(
    config: ExplainerConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    metrics_port: Optional[int] = 0,
    max_workers: int = 32,
) -> tuple[RunningServer, ExplainerServicer]:
    """Start the Explainer server; port 0 picks a free port."""
    registry = CollectorRegistry()
    servicer = ExplainerServicer(config, registry)
    running = start_server(
        lambda server: explainer_pb2_grpc.add_ExplainerServicer_to_server(servicer, server),
        [EXPLAINER_SERVICE],
        registry,
        host=host,
        port=port,
        metrics_port=metrics_port,
        max_workers=max_workers,
        max_message_bytes=config.limits.max_message_bytes,
    )
    return running, servicer
