"""The package as pip installs it: the wheel's modules, data, typing marker and license, and fresh virtual
environments where each extra makes its commands work (the slow tests build the wheel and install it with
the machine's own pip configuration, as `make` does)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import grpc
import numpy as np
import pytest

from images import png
from multishap.client.cli.extras import EXTRA_OF
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import common_pb2, scorer_pb2, scorer_pb2_grpc
from servers import free_port, wait_serving

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PROJECT["tool"]["setuptools"]
SKIPPED = {".venv", ".git", "__pycache__", ".pytest_cache", "out", "build", "dist"}


def requirement_name(spec: str) -> str:
    for stop in "[=<>!~;( ":
        spec = spec.split(stop)[0]
    return spec.strip().lower().replace("_", "-")


def extra_closure(extra: str) -> set[str]:
    """The distributions an extra names, through the extras it pulls in (multishap[...])."""
    names: set[str] = set()
    for spec in PROJECT["project"]["optional-dependencies"][extra]:
        if requirement_name(spec) == "multishap":
            for inner in spec.split("[")[1].split("]")[0].split(","):
                names |= extra_closure(inner.strip())
        else:
            names.add(requirement_name(spec))
    return names


def test_every_package_of_the_source_tree_is_in_the_wheel():
    listed = set(SETUPTOOLS["packages"])
    for name, folder in SETUPTOOLS["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            if SKIPPED & set(relative.parts):
                continue
            package = ".".join([name, *relative.parts])
            assert package in listed, f"{package} is missing from [tool.setuptools] packages"


def test_the_license_is_apache_2_and_declared():
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"] and "END OF TERMS AND CONDITIONS" in text
    assert PROJECT["project"]["license"] == "Apache-2.0" and PROJECT["project"]["license-files"] == ["LICENSE"]


def test_the_servers_need_no_plotting_library_and_each_hint_names_a_real_extra():
    base = {requirement_name(spec) for spec in PROJECT["project"]["dependencies"]}
    assert "matplotlib" not in base and "tqdm" in base
    assert "matplotlib" in extra_closure("demo") and "matplotlib" in extra_closure("notebook")
    provides = metadata.packages_distributions()
    for module, extra in EXTRA_OF.items():
        named = extra_closure(extra)
        dists = {d.lower().replace("_", "-") for d in provides[module]}
        required = {requirement_name(r) for d in named for r in (metadata.requires(d) or []) if "extra ==" not in r}
        assert dists & (named | required), f"{module} is not installed by multishap[{extra}]"


# --- fresh virtual environments (slow) --------------------------------------------------------------------------


def run(*argv, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
    """Run a command outside this checkout and return what it printed; fail the test if it fails."""
    kwargs.setdefault("cwd", tempfile.gettempdir())
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{argv} exited {done.returncode}: {done.stderr[-3000:]}"
    return done


def clean_env() -> dict[str, str]:
    """The environment without this checkout on the path: only the installed wheel is importable."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built, with build isolation, from a copy of this checkout (builds leave nothing in the tree)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIPPED, "*.egg-info"))
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", work / "dist", source, env=clean_env())
    [built] = (work / "dist").glob("multishap-*.whl")
    return built


def venv_with(wheel: Path, folder: Path, extra: str) -> Path:
    """A fresh virtual environment (no system site-packages) with ``wheel[extra]`` installed; its bin folder."""
    run(sys.executable, "-m", "venv", folder)
    run(folder / "bin" / "python", "-m", "pip", "install", "--quiet", f"{wheel}[{extra}]", env=clean_env(),
        timeout=1800)
    return folder / "bin"


@pytest.mark.slow
def test_the_wheel_carries_the_contract_typing_marker_data_and_license(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"multishap/py.typed", "multishap/adapters/hf/imagenet_classes.tsv", "multishap/client/cli/__main__.py",
            "multishap/v1/common.proto", "multishap/v1/scorer.proto", "multishap/v1/explainer.proto",
            "multishap/v1/scorer_pb2.pyi"} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in meta
    assert {f"Provides-Extra: {e}" for e in ("hf", "openai", "demo", "bench", "notebook", "plot")} <= set(meta.splitlines())
    assert 'Requires-Dist: matplotlib>=3.8; extra == "plot"' in meta


@pytest.mark.slow
def test_an_openai_install_runs_its_adapter_and_the_explainer_without_matplotlib(wheel, tmp_path):
    bin_ = venv_with(wheel, tmp_path / "venv", "openai")
    env = clean_env()
    assert "usage: multishap adapter openai" in run(bin_ / "multishap", "adapter", "openai", "--help", env=env).stdout
    assert "--metrics-port" in run(bin_ / "multishap", "serve", "--help", env=env).stdout
    version = run(bin_ / "python", "-c", "import multishap; print(multishap.__version__)", env=env).stdout.strip()
    assert run(bin_ / "multishap", "--version", env=env).stdout.strip() == f"multishap {version}"
    assert version == PROJECT["project"]["version"]
    missing = subprocess.run([bin_ / "python", "-c", "import matplotlib"], capture_output=True, env=env)
    assert missing.returncode != 0

    port = free_port()
    adapter = subprocess.Popen([bin_ / "multishap", "adapter", "openai", "--base-url", "http://127.0.0.1:9/v1",
                                "--model", "m", "--cache", tmp_path / "c.sqlite", "--port", str(port),
                                "--metrics-port", "-1"], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_serving(f"127.0.0.1:{port}", adapter)
    finally:
        adapter.terminate()
        adapter.wait(timeout=60)
    hf = subprocess.run([bin_ / "multishap", "adapter", "hf", "--port", "0", "--metrics-port", "-1"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert hf.returncode == 1 and hf.stderr.strip().splitlines() == [
        "error: this command needs the torch package, which is not installed: pip install 'multishap[hf]'"]


@pytest.mark.slow
def test_an_hf_install_serves_the_imagenet_zeroshot_adapter(wheel, tmp_path):
    bin_ = venv_with(wheel, tmp_path / "venv", "hf")
    port = free_port()
    with (tmp_path / "adapter.log").open("w") as log:
        adapter = subprocess.Popen([bin_ / "multishap", "adapter", "hf", "--kind", "imagenet-zeroshot", "--port",
                                    str(port), "--metrics-port", "-1"], env=clean_env(), cwd=tmp_path, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_serving(f"127.0.0.1:{port}", adapter, timeout=600)
        instance = common_pb2.Instance(image=png(), text="a cat on a couch", grid=common_pb2.Grid(rows=2, cols=2))
        masks = np.array([[True] * 9, [False] * 9, [True, False, True, False, True, True, False, True, False]])
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = scorer_pb2_grpc.ScorerStub(channel)
            players = stub.Describe(scorer_pb2.DescribeRequest(instance=instance), timeout=120)
            reply = stub.Score(scorer_pb2.ScoreRequest(instance=instance, num_players=9, num_coalitions=3,
                                                       coalitions=pack_coalitions(masks)), timeout=120)
    finally:
        adapter.terminate()
        adapter.wait(timeout=60)
    assert list(players.tokens) == ["a", "cat", "on", "a", "couch"] and "MiniLM" in players.model_id
    values = unpack_values(reply.values, 3)
    assert np.all(np.isfinite(values)) and values[0] != values[1]
    assert adapter.returncode == 0
