"""Start-up tuning of a local model: intra-op threads and the micro-batch, measured, not guessed.

How fast a model runs per input depends on the machine more than on the model: on a small
shared CPU one thread and small micro-batches won (EfficientNet-Lite0: 41 images/s at
micro-batch 1 against 17 at 16, one thread; two threads were slower than one on that
2-core machine shared with other work), while a GPU wants the largest batch that fits. So the
adapter times a few candidates on a dummy input when it starts (imagenet-zeroshot's probe
took about 13 s on a 2-core CPU, more while other work shared it) and keeps the fastest per
input; on CUDA it sizes the micro-batch from the free memory. An
explicit micro-batch or thread count always wins over the probe.

The probe's throughput also sizes one Score call (:func:`preferred_batch`): a few seconds
of work, so a caller's deadline and cancellation stay responsive.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

CPU_CANDIDATES = (1, 2, 4, 8, 16, 32)
GPU_CAP = 512  # largest micro-batch the memory rule picks (a bound on one pass's latency; not measured here)
GPU_MEMORY_SHARE = 0.5  # of the free memory one micro-batch may use (activations of concurrent calls, fragmentation)
CALL_SECONDS = 2.0  # work one Score call of preferred_batch coalitions should take on an idle machine
THREADS_MARGIN = 1.25  # every CPU must beat one thread by this much: many threads collapse when the CPU is shared
STOP_SHARE = 0.75  # a candidate this far below the best per input ends the (ascending) sweep: larger ones only get slower
TIMEOUT_FACTOR, TIMEOUT_FLOOR = 5.0, 10.0  # preferred_timeout = max(floor, factor x the expected time)


@dataclass(frozen=True)
class Tuning:
    """What the start-up probe chose and measured.

    ``micro_batch``: inputs per forward pass; ``threads``: torch intra-op threads (0: left as
    torch set them, e.g. on CUDA); ``items_per_s``: the model's throughput at that choice;
    ``source``: "probe", "memory" (CUDA, from free memory) or "explicit"; ``rates``: items/s per
    micro-batch the probe timed (empty when it timed only the choice); ``thread_rates``: items/s per
    thread count it timed (empty when the count was given).
    """

    micro_batch: int
    threads: int
    items_per_s: float
    source: str
    rates: dict[int, float] = field(default_factory=dict)
    thread_rates: dict[int, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the start-up log: the choice and what it rests on."""
        rates = ", ".join(f"{b}: {r:.1f}/s" for b, r in sorted(self.rates.items()))
        threads = f", {self.threads} thread(s)" if self.threads else ""
        if self.thread_rates:
            threads += " (" + ", ".join(f"{t}: {r:.1f}/s" for t, r in sorted(self.thread_rates.items())) + ")"
        return (f"micro-batch {self.micro_batch}{threads} ({self.source}; {self.items_per_s:.1f} inputs/s"
                + (f"; timed {rates}" if rates else "") + ")")


class DummyImages:
    """Random (b, 3, size, size) images in [0, 1] on ``device``, made once per batch size, so timing measures the model."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.size, self.device = size, device
        self._made: dict[int, torch.Tensor] = {}

    def __call__(self, batch: int) -> torch.Tensor:
        if batch not in self._made:
            generator = torch.Generator().manual_seed(batch)
            self._made[batch] = torch.rand(batch, 3, self.size, self.size, generator=generator).to(self.device)
        return self._made[batch]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def rate(step: Callable[[int], None], size: int, min_seconds: float, device: torch.device) -> float:
    """Inputs per second of ``step(size)``, repeated for at least ``min_seconds`` (after the call before it warmed up)."""
    calls, start = 0, time.perf_counter()
    while True:
        step(size)
        calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return calls * size / elapsed


def time_sizes(step: Callable[[int], None], sizes: Sequence[int], device: torch.device, rounds: int = 2,
               min_seconds: float = 0.15) -> dict[int, float]:
    """Best-of-``rounds`` inputs/s per size; rounds alternate the sizes so a noisy neighbour hurts all alike."""
    for size in sizes:
        step(size)  # warm-up: first-call allocation, jit profiling runs
    best: dict[int, float] = {}
    for _ in range(rounds):
        for size in sizes:
            best[size] = max(best.get(size, 0.0), rate(step, size, min_seconds, device))
    return best


def sweep(step: Callable[[int], None], candidates: Sequence[int], device: torch.device,
          min_seconds: float = 0.15) -> dict[int, float]:
    """Inputs/s of the ascending ``candidates``, best of two rounds; the first round stops at a candidate
    below ``STOP_SHARE`` of the best rate, so a large model is not run at sizes it is already too slow at
    (on a CPU the rate per input peaks at a small batch; one pass of 32 EfficientNet images took 3 s)."""
    rates: dict[int, float] = {}
    for size in candidates:
        step(size)
        rates[size] = rate(step, size, min_seconds, device)
        if rates[size] < STOP_SHARE * max(rates.values()):
            break
    for size in rates:
        rates[size] = max(rates[size], rate(step, size, min_seconds, device))
    return rates


def tune(step: Callable[[int], None], device: torch.device, micro_batch: Optional[int] = None,
         threads: Optional[int] = None, candidates: Sequence[int] = CPU_CANDIDATES) -> Tuning:
    """Choose threads and micro-batch for ``step(b)``, one forward pass of ``b`` dummy inputs, and set the threads.

    CPU: the thread count (unless ``threads`` is given) is timed at the third candidate (4 by
    default): every available CPU if that is ``THREADS_MARGIN`` times faster than one thread, else
    one; then the candidates are swept at it (:func:`sweep`) and the fastest per input kept.
    CUDA: the largest power of two up to ``GPU_CAP`` whose activations, extrapolated from one
    pass of 8, fit in ``GPU_MEMORY_SHARE`` of the free memory. ``micro_batch`` skips the choice
    (its throughput is still timed, for :func:`preferred_batch`).
    """
    if device.type == "cuda":
        chosen, source = (micro_batch, "explicit") if micro_batch else (_from_memory(step, device), "memory")
        return Tuning(chosen, 0, time_sizes(step, [chosen], device, rounds=1)[chosen], source)
    by_threads: dict[int, float] = {}
    if threads:
        torch.set_num_threads(threads)
    else:
        options = sorted({1, available_cpus()})
        probe_size = micro_batch or candidates[min(2, len(candidates) - 1)]
        for count in options:  # warm-up
            torch.set_num_threads(count)
            step(probe_size)
        for _ in range(2):  # the counts alternate, so a noisy neighbour hurts each alike
            for count in options:
                torch.set_num_threads(count)
                by_threads[count] = max(by_threads.get(count, 0.0), rate(step, probe_size, 0.15, device))
        threads = options[-1] if by_threads[options[-1]] >= THREADS_MARGIN * by_threads[1] else 1
        torch.set_num_threads(threads)
    if micro_batch:  # one timing: it only sizes Score calls
        measured = time_sizes(step, [micro_batch], device, rounds=1)[micro_batch]
        return Tuning(micro_batch, threads, measured, "explicit", thread_rates=by_threads)
    rates = sweep(step, candidates, device)
    chosen = max(rates, key=rates.get)
    return Tuning(chosen, threads, rates[chosen], "probe", rates, by_threads)


def _from_memory(step: Callable[[int], None], device: torch.device, sample: int = 8) -> int:
    """The largest power of two micro-batch (up to ``GPU_CAP``) whose extrapolated activations fit the free memory."""
    step(sample)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step(sample)
    torch.cuda.synchronize(device)
    per_input = max(torch.cuda.max_memory_allocated(device) - before, 1) / sample
    free, _ = torch.cuda.mem_get_info(device)
    size = 1
    while size * 2 <= GPU_CAP and size * 2 * per_input <= GPU_MEMORY_SHARE * free:
        size *= 2
    return size


def preferred_batch(items_per_s: float, micro_batch: int, inputs_per_coalition: float = 1.0) -> int:
    """Coalitions per Score call that take about ``CALL_SECONDS``: a whole number of micro-batches, at least one.

    ``inputs_per_coalition`` is the forward passes one coalition costs at worst (1 for a model
    that reads both modalities at once and for a dual encoder's image side, which dominates).
    """
    coalitions = CALL_SECONDS * items_per_s / inputs_per_coalition
    return max(micro_batch, int(coalitions // micro_batch) * micro_batch)


def preferred_timeout(batch: int, items_per_s: float, inputs_per_coalition: float = 1.0) -> float:
    """Seconds to give a Score call of ``batch`` coalitions: ``TIMEOUT_FACTOR`` times the idle-machine
    estimate, at least ``TIMEOUT_FLOOR`` (concurrent calls share the CPU; the probe's rate is a best case)."""
    return max(TIMEOUT_FLOOR, TIMEOUT_FACTOR * batch * inputs_per_coalition / items_per_s)
