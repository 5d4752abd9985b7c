"""``multishap simulator``: a simulated OpenAI-compatible endpoint whose "model" is a synthetic game, with
fault injection, so that an audit through ``multishap adapter openai`` can be rehearsed offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from multishap.service import defaults
from multishap.service.math.games import FAMILIES

from . import openai_adapter, types
from .env import Parser
from .serving import wait_for_stop

# The simulator's fault kinds (adapters/openai/simulator.py FAULTS, and "unusable"); held to them by a test.
FAULT_KINDS = ("429", "500", "slow", "malformed", "drop", "unusable")
DESCRIPTION = ("Serve a local chat-completions endpoint on 127.0.0.1 whose model is a synthetic game over the "
               "patches and words of one instance, and print its base URL for `multishap adapter openai "
               "--base-url`. It expects the key in OPENAI_API_KEY (or --api-key-file), as the adapter sends it. "
               "With the adapter's --score logprob, an exact explanation is the game's exact Phi. The rendering "
               "options must match the adapter's. Needs the openai extra.")


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``simulator`` and its options."""
    p = parent.command_parser(sub, "simulator", help="serve a simulated OpenAI-compatible endpoint (offline "
                                                     "rehearsal of an audit)", description=DESCRIPTION)
    p.option("image", "the image the audit explains", required=True, type=types.path)
    p.option("text", "its text (the words are the text players)", required=True)
    p.option("answer", "the target answer the adapter asks the probability of", required=True)
    p.option("grid", "patch grid, rows x columns, as the explain call sends it", defaults.GRID, type=types.grid)
    p.option("family", "synthetic game family (one with Moebius terms: not mlp or bilinear)", "mixed",
             type=types.one_of(FAMILIES), choices=FAMILIES)
    p.option("seed", "the game's seed", defaults.SEED, type=types.NON_NEGATIVE)
    p.option("port", "HTTP port on 127.0.0.1 (0: any free port)", defaults.SIMULATOR_PORT, type=types.PORT)
    p.option("api-key-file", "file holding the key requests must carry (else OPENAI_API_KEY)", type=types.path)
    p.option("template", "the adapter's prompt template", "{text}\\nAnswer with one word.")
    p.option("placeholder", "the adapter's masked word", "___")
    p.option("image-size", "the adapter's --image-size", 512, type=types.POSITIVE)
    p.option("baseline", "the adapter's image baseline", openai_adapter.BASELINES[0],
             type=types.one_of(openai_adapter.BASELINES), choices=openai_adapter.BASELINES)
    p.option("latency", "seconds each answer takes", 0.0, type=types.SECONDS)
    p.option("fault-rate", "share of requests that fail", 0.0, type=types.number(0.0))
    p.option("fault-kinds", f"comma-separated kinds of failure out of {', '.join(FAULT_KINDS)}",
             ",".join(FAULT_KINDS[:5]), type=types.names(FAULT_KINDS))
    p.option("fault-seed", "seed of the fault draws", 0, type=types.NON_NEGATIVE)
    p.option("retry-after-ms", "retry-after-ms of a 429", 20, type=types.NON_NEGATIVE)
    p.option("slow-seconds", "how long a slow answer takes", 1.0, type=types.SECONDS)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM or Ctrl-C, then print one line on the traffic it saw."""
    from multishap.adapters.openai.simulator import FaultPlan, game_endpoint

    if args.fault_rate > 1:
        raise ValueError(f"--fault-rate is a share of requests, from 0 to 1; got {args.fault_rate:g}")
    key, source = openai_adapter.api_key(args)
    key = key.strip()
    if not key:
        raise ValueError("the simulator needs the key it will expect: set OPENAI_API_KEY or give --api-key-file")
    image = _read(args.image)
    rows, cols = args.grid
    faults = FaultPlan(rate=args.fault_rate, kinds=args.fault_kinds, retry_after_ms=args.retry_after_ms,
                       slow_seconds=args.slow_seconds, seed=args.fault_seed)
    endpoint = game_endpoint(image, args.text, args.answer, rows, cols, args.family, args.seed, key, faults,
                             latency=args.latency, port=args.port, template=args.template.replace("\\n", "\n"),
                             placeholder=args.placeholder, image_size=args.image_size,
                             baseline=args.baseline)
    print(f"simulated endpoint at {endpoint.base_url} (game {args.family}, seed {args.seed}, {rows}x{cols} "
          f"patches x {len(args.text.split())} words; key from {source})", flush=True)
    try:
        wait_for_stop()
    finally:
        endpoint.close()
    print(f"served {endpoint.traffic.summary()}", flush=True)
    return 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ValueError(f"could not read the image {str(path)!r}: {err.strerror}") from None
