"""``multishap adapter KIND``: a Scorer server for the synthetic games, a local Hugging Face model or an
OpenAI-compatible endpoint."""

from __future__ import annotations

import argparse
import logging

from multishap.adapters.hf import DTYPES, KINDS
from multishap.service import defaults
from multishap.service.rpc.config import ServerSettings

from . import openai_adapter, types
from .env import Parser
from .serving import listen_options, listening, metrics_port, serve_until_stopped

HF_SCORES = ("cosine", "logit", "probability", "log-probability")


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``adapter`` and its kinds."""
    adapter = parent.command_parser(sub, "adapter", help="run an adapter (a Scorer server)",
                                    description="Run an adapter: the Scorer gRPC server a target's replicas are.")
    kinds = adapter.add_subparsers(dest="adapter", required=True, metavar="ADAPTER")

    synthetic = adapter.command_parser(kinds, "synthetic", help="deterministic synthetic games with known truth")
    _listen(synthetic, "synthetic")

    hf = adapter.command_parser(kinds, "hf", help="a local Hugging Face / PyTorch model (pip install "
                                                  "'multishap[hf]')")
    hf.option("kind", "model kind: imagenet-zeroshot (real pretrained weights, offline), clip, vilt or vlm",
              KINDS[0], type=types.one_of(KINDS), choices=KINDS)
    hf.option("model", "local checkpoint path (clip, vilt, vlm)", type=types.path)
    hf.option("score", "clip: cosine (default) or logit; vilt: logit (default) or probability; "
                       "vlm: probability (default) or log-probability", type=types.one_of(HF_SCORES), choices=HF_SCORES)
    hf.option("device", "torch device: cpu, cuda or cuda:N", "cpu")
    hf.option("dtype", "float16 and bfloat16 on CUDA only", DTYPES[0], type=types.one_of(DTYPES), choices=DTYPES)
    hf.option("micro-batch", "inputs per forward pass; 0: the fastest per input in a start-up probe on the CPU, "
                             "the largest that fits the free memory on CUDA", 0, type=types.integer(0))
    hf.option("threads", "torch intra-op threads; 0: 1 or every CPU, whichever the start-up probe finds faster",
              0, type=types.integer(0))
    hf.option("answer-pattern", "vlm: " + openai_adapter.ANSWER_PATTERN_HELP, type=openai_adapter.answer_pattern)
    hf.flag("fuse", "imagenet-zeroshot: run the image network traced and frozen, BatchNorm folded "
                    "(the same scores to about 1e-6, faster)", True)
    _listen(hf, "hf")

    oa = adapter.command_parser(kinds, "openai", help="an OpenAI-compatible chat endpoint with log-probabilities "
                                                      "(pip install 'multishap[openai]')",
                                description=openai_adapter.DESCRIPTION)
    openai_adapter.add_options(oa)
    _listen(oa, "openai")
    adapter.set_defaults(run=run)


def _listen(p: Parser, kind: str) -> None:
    settings = ServerSettings()
    listen_options(p, defaults.ADAPTER_PORTS[kind], defaults.ADAPTER_METRICS_PORTS[kind], settings.grace_s,
                   settings.drain_delay_s)


def _backend(args: argparse.Namespace):
    """The backend the options describe, built once the ports are bound (loading a model can take minutes)."""
    if args.adapter == "hf":
        from multishap.adapters.hf import load_backend

        model = None if args.model is None else str(args.model)
        return load_backend(args.kind, model, args.device, args.dtype, args.micro_batch, args.score, args.threads,
                            args.fuse, args.answer_pattern)
    if args.adapter == "openai":
        return openai_adapter.backend(args)
    from multishap.adapters.synthetic.backend import SyntheticBackend

    return SyntheticBackend()


def run(args: argparse.Namespace) -> int:
    """Bind the ports, build the backend, serve until SIGTERM, then let the backend finish what it was paid for."""
    from multishap.adapters.server import serve_adapter

    if args.adapter == "openai":
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # not one line per paid request
    running, servicer = serve_adapter(lambda: _backend(args), host=args.host, port=args.port,
                                      metrics_port=metrics_port(args.metrics_port), **listening(args))
    backend = servicer.backend
    print(f"{args.adapter} adapter ({backend.model_id}) on {args.host}:{running.port}, "
          f"metrics on {running.metrics_port}", flush=True)
    return serve_until_stopped(running, args.grace, args.drain_delay, after_stop=backend.close)
