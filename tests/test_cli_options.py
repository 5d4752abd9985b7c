"""The command line's options: one environment prefix per command, real flags, choices, typed values, the
version, and one line naming the extra when a command's dependency is missing."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import multishap
from multishap.client.cli import build_parser
from multishap.client.cli import main as cli
from multishap.client.cli.env import Parser
from multishap.service.rpc.config import Limits
from servers import free_port, wait_serving

ROOT = Path(__file__).resolve().parents[1]
OPENAI = ["adapter", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
CLIENT = ["--address", "127.0.0.1:9", "--target", "syn", "--image", "x.png", "--text", "a cat"]


def commands(parser: argparse.ArgumentParser):
    """Every command parser under ``parser``, nested ones included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield child
                yield from commands(child)


def options(parser: argparse.ArgumentParser):
    return [a for a in parser._actions if a.option_strings and a.dest not in ("help", "version")]


def test_every_option_has_its_own_variable_named_in_its_help():
    seen: dict[str, str] = {}
    for command in commands(build_parser()):
        assert isinstance(command, Parser)
        for action in options(command):
            name = action.option_strings[0].removeprefix("--")
            if name in ("param", "candidate", "explainer") and action.default is None:  # repeatable: no variable
                continue
            env = command.variables[name]
            assert env == "MULTISHAP_" + f"{command.command} {name}".upper().replace(" ", "_").replace("-", "_")
            assert env not in seen, f"{env} is both {seen[env]} and {command.command} --{name}"
            seen[env] = f"{command.command} --{name}"
            assert env in action.help
    config = {"MULTISHAP_TARGETS"} | {f"MULTISHAP_{f.name.upper()}" for f in dataclasses.fields(Limits)}
    assert not config & set(seen), "a command variable would also configure the explainer"
    assert {"MULTISHAP_SERVE_PORT", "MULTISHAP_ADAPTER_OPENAI_CONCURRENCY", "MULTISHAP_EXPLAIN_DATASET_CONCURRENCY",
            "MULTISHAP_ADAPTER_HF_MODEL", "MULTISHAP_EXPLAIN_BUDGET"} <= set(seen)


def test_a_variable_sets_only_its_own_command(monkeypatch):
    monkeypatch.setenv("MULTISHAP_ADAPTER_OPENAI_CONCURRENCY", "3")
    monkeypatch.setenv("MULTISHAP_SERVE_PORT", "6001")
    monkeypatch.setenv("MULTISHAP_CONCURRENCY", "99")
    monkeypatch.setenv("MULTISHAP_PORT", "7001")
    parser = build_parser()
    assert parser.parse_args(OPENAI).concurrency == 3
    assert parser.parse_args(["explain-dataset", "m.jsonl", *CLIENT[:4]]).concurrency == 4
    assert parser.parse_args(["serve"]).port == 6001
    assert parser.parse_args(["adapter", "synthetic"]).port == 50051
    assert parser.parse_args(["serve", "--port", "6002"]).port == 6002


def test_a_variable_goes_through_the_options_type_and_choices(monkeypatch):
    monkeypatch.setenv("MULTISHAP_EXPLAIN_METHOD", "EXACT")
    monkeypatch.setenv("MULTISHAP_EXPLAIN_GRID", "2x3")
    monkeypatch.setenv("MULTISHAP_EXPLAIN_DRY_RUN", "yes")
    monkeypatch.setenv("MULTISHAP_EXPLAIN_TARGET", "syn")
    args = build_parser().parse_args(["explain", "--image", "x.png", "--text", "a cat"])
    assert (args.method, args.grid, args.dry_run, args.target) == ("exact", (2, 3), True, "syn")
    assert build_parser().parse_args(["explain", "--image", "x.png", "--text", "a", "--no-dry-run"]).dry_run is False


@pytest.mark.parametrize("env, argv, says", [
    ({}, ["explain", *CLIENT, "--method", "fastest"], "argument --method: expected one of auto, exact"),
    ({}, ["explain", *CLIENT, "--budget", "-5"], "argument --budget: expected an integer at least 0"),
    ({}, ["explain", *CLIENT, "--grid", "7by7"], "argument --grid: a grid looks like 7x7"),
    ({}, ["explain", *CLIENT, "--dry-run", "yes"], "unrecognized arguments: yes"),
    ({}, ["explain", *CLIENT, "--baseline", "grey"], "argument --baseline: expected one of zero, mean, blur"),
    ({}, ["faithfulness", *CLIENT, "--explainer", "lime"], "argument --explainer: expected one of multishap"),
    ({}, ["serve", "--port", "65536"], "argument --port: expected an integer from 0 to 65535"),
    ({}, ["serve", "--grace", "-1"], "argument --grace: expected a finite number at least 0"),
    ({}, ["adapter", "hf", "--dtype", "int8"], "argument --dtype: expected one of float32"),
    ({}, [*OPENAI, "--score", "logit"], "argument --score: expected one of prob, logprob"),
    ({}, [*OPENAI, "--top-logprobs", "21"], "argument --top-logprobs: expected an integer from 0 to 20"),
    ({}, [*OPENAI, "--max-cost", "nan"], "argument --max-cost: expected a finite number above 0"),
    ({"MULTISHAP_ADAPTER_OPENAI_RPM": "lots"}, OPENAI, "MULTISHAP_ADAPTER_OPENAI_RPM: expected a number; got 'lots'"),
    ({"MULTISHAP_EXPLAIN_INDEX": "XII"}, ["explain", *CLIENT], "MULTISHAP_EXPLAIN_INDEX: expected one of SII, BII"),
    ({"MULTISHAP_SERVE_PORT": "x"}, ["serve"], "MULTISHAP_SERVE_PORT: expected an integer; got 'x'"),
])
def test_a_bad_value_is_one_line_and_exit_code_2(monkeypatch, capsys, env, argv, says):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as info:
        cli(argv)
    assert info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and says in line


def test_a_bad_variable_of_another_command_stops_nothing(monkeypatch):
    monkeypatch.setenv("MULTISHAP_SERVE_PORT", "x")
    assert build_parser().parse_args(["adapter", "synthetic"]).port == 50051


def test_the_openai_choices_and_defaults_are_the_adapters():
    from multishap.adapters.openai import EndpointConfig, RenderOptions, RetryPolicy, ScoringOptions
    from multishap.adapters.openai.backend import OpenAIOptions
    from multishap.adapters.openai.render import DETAILS
    from multishap.adapters.openai.scoring import MATCHES, SCORES
    from multishap.client.cli import openai_adapter

    assert (openai_adapter.DETAILS, openai_adapter.SCORES, openai_adapter.MATCHES) == (DETAILS, SCORES, MATCHES)
    args = build_parser().parse_args(OPENAI)
    field = {f.name: f.default for cls in (EndpointConfig, RenderOptions, RetryPolicy, ScoringOptions)
             for f in dataclasses.fields(cls)}
    assert args.template.replace("\\n", "\n") == field["template"] and args.placeholder == field["placeholder"]
    for name in ("image_size", "detail", "score", "match", "top_logprobs", "prompt_logprobs", "timeout",
                 "concurrency", "max_tokens", "temperature", "max_attempts", "deadline"):
        assert getattr(args, name) == field[name], name
    assert args.cache == [f for f in dataclasses.fields(OpenAIOptions) if f.name == "cache_path"][0].default_factory()


def test_the_simulator_fault_kinds_are_the_simulators():
    from multishap.adapters.openai.simulator import FAULTS
    from multishap.client.cli.simulator import FAULT_KINDS

    assert FAULT_KINDS == (*FAULTS, "unusable")


def test_version_agrees_with_the_package_and_pyproject():
    done = subprocess.run([sys.executable, "-m", "multishap.client.cli", "--version"], capture_output=True,
                          text=True, timeout=60)
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert done.returncode == 0 and done.stdout.strip() == f"multishap {multishap.__version__}"
    assert multishap.__version__ == declared


def without(modules: list[str], argv: list[str], **kwargs) -> subprocess.Popen:
    """``multishap ARGV`` in a Python where importing any of ``modules`` fails, as when they are not installed."""
    code = ("import sys\n"
            f"for name in {modules!r}:\n"
            "    sys.modules[name] = None\n"
            "from multishap.client.cli import main\n"
            f"sys.exit(main({argv!r}))\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kwargs)


@pytest.mark.parametrize("blocked, argv, extra", [
    (["openai"], [*OPENAI, "--port", "0", "--metrics-port", "-1"], "openai"),
    (["torch"], ["adapter", "hf", "--port", "0", "--metrics-port", "-1"], "hf"),
    (["openai"], ["simulator", "--image", "x.png", "--text", "a", "--answer", "a", "--port", "0"], "openai"),
    (["matplotlib"], ["explain", *CLIENT], "plot"),
])
def test_a_missing_dependency_names_its_extra_in_one_line(blocked, argv, extra):
    proc = without(blocked, argv)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: this command needs the {blocked[0]} package, which is not "
                                        f"installed: pip install 'multishap[{extra}]'"]


def test_the_servers_run_without_matplotlib():
    help_ = without(["matplotlib"], ["serve", "--help"])
    out, _ = help_.communicate(timeout=60)
    assert help_.returncode == 0 and "--metrics-port" in out
    port = free_port()
    proc = without(["matplotlib", "pandas"], ["adapter", "synthetic", "--port", str(port), "--metrics-port", "-1"])
    try:
        wait_serving(f"127.0.0.1:{port}", proc)
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_every_command_renders_its_help():
    import argparse

    from multishap.client.cli import build_parser

    def parsers(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    yield from parsers(child)

    rendered = [p.format_help() for p in parsers(build_parser())]
    assert len(rendered) > 15 and all("usage:" in text for text in rendered)
