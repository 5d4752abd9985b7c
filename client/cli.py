"""The ``multishap`` command: run servers, explain instances and datasets, score explainers.

Every option can also be set by an environment variable MULTISHAP_<OPTION> (upper case,
dashes as underscores), e.g. MULTISHAP_ADDRESS, MULTISHAP_TARGET, MULTISHAP_BUDGET.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from .sdk import DEFAULT_BUDGET, DEFAULT_MAX_RETRIES, ExplainerClient, ExplainerError


def _env(option: str, default=None):
    return os.environ.get("MULTISHAP_" + option.upper().replace("-", "_"), default)


def _opt(parser: argparse.ArgumentParser, name: str, help: str, default=None, **kwargs) -> None:
    """An option whose default comes from MULTISHAP_<NAME>, said in its help."""
    env = "MULTISHAP_" + name.upper().replace("-", "_")
    value = _env(name, default)
    shown = f" (env {env}; default: {default})" if default is not None else f" (env {env})"
    parser.add_argument(f"--{name}", default=value, help=help + shown, **kwargs)


def _grid(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 7x7 (rows x columns); got {text!r}") from None
    return rows, cols


def _params(items: Optional[Sequence[str]]) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--param takes KEY=VALUE; got {item!r}")
        out[key] = value
    return out


def _client_options(p: argparse.ArgumentParser) -> None:
    _opt(p, "address", "explainer address host:port", "127.0.0.1:50050")
    _opt(p, "target", "target name configured on the explainer", required=_env("target") is None)
    _opt(p, "timeout", "seconds before giving up, retries included", type=float)
    _opt(p, "max-retries", "retries of a call the busy server asks to retry later", DEFAULT_MAX_RETRIES, type=int)


def _instance_options(p: argparse.ArgumentParser, need_image: bool = True) -> None:
    _opt(p, "image", "image file", required=need_image and _env("image") is None)
    _opt(p, "text", "question, caption or prompt", required=need_image and _env("text") is None)
    _opt(p, "answer", "the answer or caption being explained", "")
    _opt(p, "grid", "patch grid, rows x columns", "7x7", type=_grid)
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="adapter parameter (repeatable)")
    _opt(p, "seed", "random seed", 0, type=int)
    _opt(p, "budget", "distinct coalitions to evaluate (0: the server's default)", DEFAULT_BUDGET, type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multishap",
        description="Cross-modal Shapley interactions (Φ: image patches x text tokens) for vision-language "
                    "models, and faithfulness scores for other explainers.",
        epilog="Every option can also be set as MULTISHAP_<OPTION> in the environment.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the explainer service",
                           description="Run the Explainer gRPC service in front of configured targets.")
    _opt(serve, "config", "TOML file with [limits] and [targets.NAME] (see docs)")
    _opt(serve, "host", "address to listen on", "127.0.0.1")
    _opt(serve, "port", "gRPC port", 50050, type=int)
    _opt(serve, "metrics-port", "Prometheus /metrics port (-1: off)", 9460, type=int)
    _opt(serve, "grace", "seconds in-flight work gets on SIGTERM (default: [server] grace_s, 30)", type=float)
    _opt(serve, "drain-delay", "seconds NOT_SERVING is reported before the port closes on SIGTERM "
                               "(default: [server] drain_delay_s, 2)", type=float)

    adapter = sub.add_parser("adapter", help="run an adapter (a Scorer server)")
    kinds = adapter.add_subparsers(dest="adapter", required=True, metavar="ADAPTER")
    synthetic = kinds.add_parser("synthetic", help="deterministic synthetic games with known truth")
    _opt(synthetic, "host", "address to listen on", "127.0.0.1")
    _opt(synthetic, "port", "gRPC port", 50051, type=int)
    _opt(synthetic, "metrics-port", "Prometheus /metrics port (-1: off)", 9461, type=int)
    _opt(synthetic, "grace", "seconds in-flight work gets on SIGTERM", 30.0, type=float)
    _opt(synthetic, "drain-delay", "seconds NOT_SERVING is reported before the port closes on SIGTERM", 2.0,
         type=float)

    hf = kinds.add_parser("hf", help="a local Hugging Face / PyTorch model (imagenet-zeroshot, clip, vilt, vlm)")
    _opt(hf, "kind", "model kind: imagenet-zeroshot (real pretrained, offline), clip, vilt or vlm", "imagenet-zeroshot")
    _opt(hf, "model", "local checkpoint path (clip, vilt, vlm)")
    _opt(hf, "score", "clip: cosine (default) or logit; vilt: logit (default) or probability; "
                      "vlm: probability (default) or log-probability")
    _opt(hf, "device", "cpu or cuda", "cpu")
    _opt(hf, "dtype", "float32, float16 or bfloat16 (half precision on CUDA only)", "float32")
    _opt(hf, "micro-batch", "inputs per encoder forward pass", 32, type=int)
    _opt(hf, "host", "address to listen on", "127.0.0.1")
    _opt(hf, "port", "gRPC port", 50052, type=int)
    _opt(hf, "metrics-port", "Prometheus /metrics port (-1: off)", 9462, type=int)
    _opt(hf, "grace", "seconds in-flight work gets on SIGTERM", 30.0, type=float)
    _opt(hf, "drain-delay", "seconds NOT_SERVING is reported before the port closes on SIGTERM", 2.0,
         type=float)

    oa = kinds.add_parser("openai", help="an OpenAI-compatible chat endpoint with log-probabilities",
                          description="Score masked inputs with a chat endpoint's log-probabilities (OpenAI, vLLM, "
                                      "...). The API key comes from OPENAI_API_KEY or --api-key-file and is never "
                                      "logged. Paid answers are kept in a persistent cache.")
    _opt(oa, "base-url", "endpoint base URL, e.g. https://api.openai.com/v1", required=_env("base-url") is None)
    _opt(oa, "model", "model name", required=_env("model") is None)
    _opt(oa, "api-key-file", "file holding the API key (else OPENAI_API_KEY)", type=Path)
    _opt(oa, "cache", "SQLite file of paid answers", str(Path.home() / ".cache" / "multishap" / "openai.sqlite"))
    _opt(oa, "template", "prompt template; {text} becomes the (masked) text, \\n a new line", "{text}\\nAnswer with one word.")
    _opt(oa, "placeholder", "what a masked word becomes", "___")
    _opt(oa, "image-size", "longer side of the image sent, in pixels (never enlarged)", 512, type=int)
    _opt(oa, "detail", "image detail: auto, low or high", "auto")
    _opt(oa, "baseline", "default image baseline: zero (black), mean or blur", "zero")
    _opt(oa, "score", "prob or logprob of the target answer", "prob")
    _opt(oa, "match", "how a listed token matches the target: normalized (trim, any case) or exact", "normalized")
    _opt(oa, "top-logprobs", "alternatives asked for (at most 20)", 20, type=int)
    _opt(oa, "max-tokens", "completion tokens per request", 1, type=int)
    _opt(oa, "temperature", "sampling temperature", 0.0, type=float)
    _opt(oa, "prompt-logprobs", "score the whole answer from vLLM's prompt log-probabilities (yes/no)", "no")
    _opt(oa, "target-token-ids", "comma-separated token ids of the answer, matched with vLLM's "
                                 "return_tokens_as_token_ids")
    _opt(oa, "concurrency", "requests in flight", 8, type=int)
    _opt(oa, "rpm", "requests per minute", type=float)
    _opt(oa, "tpm", "tokens per minute", type=float)
    _opt(oa, "timeout", "seconds per request attempt", 60.0, type=float)
    _opt(oa, "deadline", "seconds for one masked input, retries included", 600.0, type=float)
    _opt(oa, "max-attempts", "attempts per masked input", 8, type=int)
    _opt(oa, "max-requests", "paid requests per explanation", type=int)
    _opt(oa, "max-cost", "spending per explanation, in the price table's currency", type=float)
    _opt(oa, "prices", "TOML price table: [models.\"NAME\"] input = ..., output = ... per million tokens", type=Path)
    _opt(oa, "host", "address to listen on", "127.0.0.1")
    _opt(oa, "port", "gRPC port", 50053, type=int)
    _opt(oa, "metrics-port", "Prometheus /metrics port (-1: off)", 9463, type=int)
    _opt(oa, "grace", "seconds in-flight work gets on SIGTERM", 30.0, type=float)
    _opt(oa, "drain-delay", "seconds NOT_SERVING is reported before the port closes on SIGTERM", 2.0,
         type=float)

    explain = sub.add_parser("explain", help="explain one image and text",
                             description="Explain one instance; prints the metrics and writes JSON + heatmap PNG.")
    _client_options(explain)
    _instance_options(explain)
    _opt(explain, "method", "auto, exact, multishap or kernel", "auto")
    _opt(explain, "index", "SII or BII", "SII")
    _opt(explain, "baseline", "image baseline: zero, mean or blur (adapter default if unset)")
    _opt(explain, "dry-run", "only say how many coalitions and what they would cost (yes/no)", "no")
    _opt(explain, "out", "folder for the JSON and PNG", "out")

    dataset = sub.add_parser("explain-dataset", help="explain every instance of a JSONL manifest (resumable)",
                             description="Each manifest line: {\"id\", \"image\" (path relative to the manifest), "
                                         "\"text\", \"answer\"}. Finished instances in --out are skipped.")
    dataset.add_argument("manifest", type=Path)
    _client_options(dataset)
    _opt(dataset, "grid", "patch grid, rows x columns", "7x7", type=_grid)
    _opt(dataset, "method", "auto, exact, multishap or kernel", "auto")
    _opt(dataset, "budget", "distinct coalitions per instance (0: the server's default)", DEFAULT_BUDGET, type=int)
    _opt(dataset, "seed", "random seed", 0, type=int)
    _opt(dataset, "concurrency", "instances explained at once", 4, type=int)
    _opt(dataset, "out", "results file (JSON lines)", "results.jsonl", type=Path)

    faith = sub.add_parser("faithfulness", help="score an explanation with F_syn and unimodal metrics")
    _client_options(faith)
    _instance_options(faith)
    _opt(faith, "explainer", "built-in explainer when --scores is not given: multishap, random, shapley", "multishap")
    _opt(faith, "scores", "JSON file {\"patch_scores\": [...], \"token_scores\": [...]}", type=Path)
    _opt(faith, "steps", "alpha steps", 10, type=int)
    _opt(faith, "macro", "also compute the exact macro-game SII reference (yes/no)", "no")

    targets = sub.add_parser("targets", help="list the explainer's targets")
    _opt(targets, "address", "explainer address host:port", "127.0.0.1:50050")
    return parser


def _wait(running, grace: float, drain_delay: float, before_stop: Callable[[], None] = lambda: None,
          after_stop: Callable[[], None] = lambda: None) -> int:
    """Serve until SIGTERM or Ctrl-C, then drain: report NOT_SERVING for ``drain_delay``
    seconds while still serving (so load balancers move away), call ``before_stop`` (the
    explainer refuses its queue), refuse new RPCs, give those in flight ``grace`` seconds,
    cancel the rest, call ``after_stop`` (a backend finishes and stores what it was paid
    for) and exit; a watchdog exits the process if anything hangs past that."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        pass
    logging.info("stopping: NOT_SERVING for %.3g s, then in-flight work has %.3g s to finish", drain_delay, grace)
    watchdog = threading.Timer(drain_delay + grace + 10.0, os._exit, (1,))
    watchdog.daemon = True
    watchdog.start()
    running.health.enter_graceful_shutdown()
    time.sleep(drain_delay)
    before_stop()
    running.stop(grace)
    after_stop()
    logging.info("stopped")
    return 0


def _yes(value: str) -> bool:
    if str(value).lower() in ("yes", "true", "1", "on"):
        return True
    if str(value).lower() in ("no", "false", "0", "off", ""):
        return False
    raise SystemExit(f"expected yes or no; got {value!r}")


def _openai_backend(args):
    from multishap.adapters.openai import (EndpointConfig, OpenAIBackend, OpenAIOptions, RenderOptions,
                                           RetryPolicy, ScoringOptions, load_price)
    from multishap.adapters.openai.credentials import clean_key
    from multishap.adapters.pixels import BASELINE_NAMES

    if args.api_key_file:
        try:
            key, source = args.api_key_file.read_text(errors="replace"), f"--api-key-file {args.api_key_file}"
        except OSError as err:
            raise SystemExit(f"could not read the API key file: {err.strerror}") from None
    else:
        key, source = os.environ.get("OPENAI_API_KEY", ""), "OPENAI_API_KEY"
    baselines = {name: value for value, name in BASELINE_NAMES.items()}
    if args.baseline not in baselines:
        raise SystemExit(f"--baseline must be one of {', '.join(baselines)}; got {args.baseline!r}")
    try:
        ids = frozenset(int(x) for x in args.target_token_ids.split(",")) if args.target_token_ids else frozenset()
    except ValueError:
        raise SystemExit(f"--target-token-ids takes integers separated by commas; got {args.target_token_ids!r}")
    try:
        options = OpenAIOptions(
            endpoint=EndpointConfig(args.base_url, args.model, clean_key(key, source), timeout=args.timeout,
                                    concurrency=args.concurrency, rpm=args.rpm, tpm=args.tpm,
                                    max_tokens=args.max_tokens, temperature=args.temperature,
                                    retry=RetryPolicy(max_attempts=args.max_attempts, deadline=args.deadline)),
            render=RenderOptions(template=args.template.replace("\\n", "\n"), placeholder=args.placeholder,
                                 image_size=args.image_size, detail=args.detail, baseline=baselines[args.baseline]),
            scoring=ScoringOptions(score=args.score, match=args.match, top_logprobs=args.top_logprobs,
                                   prompt_logprobs=_yes(args.prompt_logprobs), target_token_ids=ids),
            cache_path=args.cache, max_requests=args.max_requests, max_cost=args.max_cost,
            price=load_price(args.prices, args.model) if args.prices else None,
        )
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if not options.endpoint.api_key and not options.endpoint.url.auth:
        logging.warning("no API key (OPENAI_API_KEY or --api-key-file): requests go out without one")
    return OpenAIBackend(options)


def _metrics_port(value: int) -> Optional[int]:
    return None if value < 0 else value


def cmd_serve(args) -> int:
    from multishap.service.rpc.config import load_config
    from multishap.service.explainer import serve_explainer

    config = load_config(args.config)
    if not config.targets:
        print("error: no targets configured: give --config or MULTISHAP_TARGETS=name=host:port", file=sys.stderr)
        return 2
    running, servicer = serve_explainer(config, host=args.host, port=args.port,
                                        metrics_port=_metrics_port(args.metrics_port))
    print(f"explainer on {args.host}:{running.port}, metrics on {running.metrics_port}, "
          f"targets: {', '.join(config.targets)}", flush=True)
    grace = config.server.grace_s if args.grace is None else args.grace
    delay = config.server.drain_delay_s if args.drain_delay is None else args.drain_delay
    try:
        return _wait(running, grace, delay, servicer.drain)
    finally:
        servicer.close()


def cmd_adapter(args) -> int:
    from multishap.adapters.server import serve_adapter

    def build():
        """The backend, built once the ports are bound (loading a model can take minutes)."""
        if args.adapter == "hf":
            from multishap.adapters.hf import load_backend

            return load_backend(args.kind, args.model, args.device, args.dtype, args.micro_batch, args.score)
        if args.adapter == "openai":
            logging.getLogger("httpx2").setLevel(logging.WARNING)  # not one line per paid request
            return _openai_backend(args)
        from multishap.adapters.synthetic.backend import SyntheticBackend

        return SyntheticBackend()

    running, servicer = serve_adapter(build, host=args.host, port=args.port,
                                      metrics_port=_metrics_port(args.metrics_port))
    backend = servicer.backend
    print(f"{args.adapter} adapter ({backend.model_id}) on {args.host}:{running.port}, "
          f"metrics on {running.metrics_port}", flush=True)
    return _wait(running, args.grace, args.drain_delay, after_stop=backend.close)


def cmd_explain(args) -> int:
    from .report import dry_run_summary, save, summary

    dry_run = _yes(args.dry_run)
    with ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries) as client:
        exp = client.explain(args.image, args.text, target=args.target, answer=args.answer, grid=args.grid,
                             method=args.method, budget=args.budget, seed=args.seed, index=args.index,
                             parameters=_params(args.param), image_baseline=args.baseline, dry_run=dry_run,
                             progress=True)
    if dry_run:
        print(dry_run_summary(exp))
        return 0
    print(summary(exp))
    json_path, png_path = save(exp, Path(args.out), Path(args.image).stem)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


def cmd_explain_dataset(args) -> int:
    from .report import usage_line

    try:
        lines = args.manifest.read_text().splitlines()
    except OSError as err:
        raise ValueError(f"could not read the manifest {str(args.manifest)!r}: {err.strerror}") from None
    records = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{args.manifest}:{n}: not JSON ({err})") from None
            if not isinstance(record, dict) or "image" not in record or "text" not in record:
                raise ValueError(f"{args.manifest}:{n}: each line needs \"image\" and \"text\"")
            image = (args.manifest.parent / str(record["image"])).resolve()
            if not image.is_file():
                raise ValueError(f"{args.manifest}:{n}: image file {str(image)!r} does not exist")
            records.append({**record, "image": str(image)})
    with ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries) as client:
        report = client.explain_dataset(records, target=args.target, concurrency=args.concurrency, out=args.out,
                                        grid=args.grid, method=args.method, budget=args.budget, seed=args.seed)
    print(report.table())
    print(f"\nMSR {report.msr:.3f}  SDR {report.sdr:.3f}  over {len(report.rows)} instances "
          f"({report.skipped} resumed from {args.out}, {len(report.failed)} failed)")
    if cost := usage_line(report.usage):
        print(cost)
    for failure in report.failed:
        print(f"failed {failure['id']}: {failure['error']}", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_faithfulness(args) -> int:
    try:
        scores = json.loads(args.scores.read_text()) if args.scores else {}
    except OSError as err:
        raise ValueError(f"could not read --scores {str(args.scores)!r}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"--scores {str(args.scores)!r} is not JSON ({err})") from None
    if not isinstance(scores, dict):
        raise ValueError(f"--scores {str(args.scores)!r} must hold a JSON object with patch_scores and token_scores")
    with ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries) as client:
        r = client.faithfulness(args.image, args.text, target=args.target, answer=args.answer, grid=args.grid,
                                patch_scores=scores.get("patch_scores"), token_scores=scores.get("token_scores"),
                                explainer=args.explainer, steps=args.steps, macro_game=_yes(args.macro),
                                seed=args.seed, budget=args.budget, parameters=_params(args.param), progress=True)
    print("| metric | value |\n|---|---|")
    for name, value in [("F_syn", r.f_syn), ("F_ins", r.f_ins), ("F_del", r.f_del),
                        ("F_syn unclipped", r.f_syn_unclipped), ("F_syn raw", r.f_syn_raw),
                        ("visual SRG", r.visual.srg), ("textual SRG", r.text.srg)]:
        print(f"| {name} | {value:+.4f} |")
    if r.macro_auc is not None:
        print(f"| macro-game SII area | {r.macro_auc:+.4f} |")
    print(f"\n{r.evaluations} coalitions scored in {r.seconds:.2f} s")
    return 0


def cmd_targets(args) -> int:
    with ExplainerClient(args.address, timeout=10) as client:
        for t in client.targets():
            print(f"{t.name}\t{'reachable' if t.reachable else 'UNREACHABLE'}\t{','.join(t.addresses)}")
    return 0


COMMANDS = {"serve": cmd_serve, "adapter": cmd_adapter, "explain": cmd_explain,
            "explain-dataset": cmd_explain_dataset, "faithfulness": cmd_faithfulness, "targets": cmd_targets}


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ExplainerError as err:
        print("error: " + " ".join(f"{err.code}: {err.details}".split()), file=sys.stderr)
        return 1
    except ValueError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 2
    except OSError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
