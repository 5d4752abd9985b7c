"""The committed stubs are what `make proto` generates from the committed .proto files."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROTO = ROOT / "proto"


def test_generated_stubs_are_up_to_date(tmp_path):
    sources = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "multishap" / "v1").glob("*.proto"))
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", str(PROTO), f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *sources],
        check=True, cwd=PROTO,
    )
    generated = sorted((tmp_path / "multishap" / "v1").iterdir())
    assert generated, "protoc generated nothing"
    for fresh in generated:
        committed = PROTO / "multishap" / "v1" / fresh.name
        assert committed.exists(), f"{committed.name} is missing: run `make proto`"
        assert committed.read_bytes() == fresh.read_bytes(), f"{committed.name} is stale: run `make proto`"


def test_stubs_import_as_multishap_v1():
    from multishap.v1 import explainer_pb2_grpc, scorer_pb2, scorer_pb2_grpc

    assert scorer_pb2.ScoreRequest.DESCRIPTOR.full_name == "multishap.v1.ScoreRequest"
    assert hasattr(scorer_pb2_grpc, "ScorerStub") and hasattr(explainer_pb2_grpc, "ExplainerStub")
