"""Bad input to the CLI ends in one `error: ...` line and exit code 2, never a traceback."""

import json
import subprocess
import sys

import pytest

from images import png
from multishap.client.cli import build_parser
from multishap.client.cli import main as cli
from servers import TEXT

# Nothing listens here: every case fails before a request would go out.
CLIENT = ["--address", "127.0.0.1:9", "--target", "syn"]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("error: ")
    return line


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    (tmp_path / "photo.png").write_bytes(png())
    (tmp_path / "bad.json").write_text("{\"patch_scores\": [1, 2")
    (tmp_path / "words.json").write_text(json.dumps({"patch_scores": ["high"], "token_scores": [1.0]}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "manifest.jsonl").write_text(json.dumps({"id": "a", "image": "missing.png", "text": TEXT}) + "\n")
    return tmp_path


@pytest.mark.parametrize("args, says", [
    (["explain", "--image", "{d}/junk.png", "--text", TEXT], "could not be decoded"),
    (["explain", "--image", "{d}/nowhere.png", "--text", TEXT], "does not exist"),
    (["faithfulness", "--image", "{d}/junk.png", "--text", TEXT], "could not be decoded"),
    (["explain-dataset", "{d}/nowhere.jsonl"], "could not read the manifest"),
    (["explain-dataset", "{d}/manifest.jsonl"], "manifest.jsonl:1: image file"),
    (["faithfulness", "--image", "{d}/photo.png", "--text", TEXT, "--scores", "{d}/nowhere.json"],
     "could not read --scores"),
    (["faithfulness", "--image", "{d}/photo.png", "--text", TEXT, "--scores", "{d}/bad.json"], "is not JSON"),
    (["faithfulness", "--image", "{d}/photo.png", "--text", TEXT, "--scores", "{d}/words.json"], "patch_scores"),
    (["faithfulness", "--image", "{d}/photo.png", "--text", TEXT, "--scores", "{d}/list.json"], "JSON object"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, args, says):
    argv = [a.format(d=files) for a in args]
    assert cli(argv[:1] + CLIENT + argv[1:]) == 2
    assert says in one_error_line(capsys)


def test_no_traceback_from_the_installed_command(files):
    argv = [sys.executable, "-m", "multishap.client.cli", "explain", *CLIENT, "--image", str(files / "junk.png"),
            "--text", TEXT]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: ")


@pytest.mark.parametrize("argv", [
    ["explain", *CLIENT, "--image", "x.png", "--text", TEXT],
    ["faithfulness", *CLIENT, "--image", "x.png", "--text", TEXT],
    ["explain-dataset", "manifest.jsonl", *CLIENT],
])
def test_the_default_budget_is_the_servers(monkeypatch, argv):
    monkeypatch.delenv(f"MULTISHAP_{argv[0].upper().replace('-', '_')}_BUDGET", raising=False)
    assert build_parser().parse_args(argv).budget == 0
