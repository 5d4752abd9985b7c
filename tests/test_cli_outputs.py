"""What the CLI writes: one explanation file pair per instance, and the faithfulness report as JSON and a plot."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import Explanation, FaithfulnessReport
from multishap.client.cli import main as cli
from multishap.v1 import common_pb2
from servers import RecordingBackend, TEXT, adapters, explainer

PARAMS = ["--param", "family=mixed", "--param", "seed=1"]


@pytest.fixture(scope="module")
def address():
    with adapters(SyntheticBackend()) as [a], explainer({"syn": [a.address]}) as (e, _, _):
        yield e.address


def test_two_texts_on_one_image_write_two_pairs_of_files(address, tmp_path, capsys):
    image = tmp_path / "photo.png"
    image.write_bytes(png())
    out = tmp_path / "out"
    texts = (TEXT, "a dog on a mat")
    for text in texts:
        assert cli(["explain", "--address", address, "--target", "syn", "--image", str(image), "--text", text,
                    "--grid", "2x2", "--budget", "600", *PARAMS, "--out", str(out)]) == 0
    capsys.readouterr()
    saved = sorted(out.glob("photo-*-explanation.json"))
    assert len(saved) == 2 and len(list(out.glob("photo-*-heatmap.png"))) == 2
    assert sorted(Explanation.from_json(path.read_text()).provenance.text for path in saved) == sorted(texts)


def test_faithfulness_writes_its_report_as_json_and_its_curves_as_an_image(address, tmp_path, capsys):
    image = tmp_path / "photo.png"
    image.write_bytes(png())
    report, plot = tmp_path / "r" / "report.json", tmp_path / "r" / "curves.png"
    assert cli(["faithfulness", "--address", address, "--target", "syn", "--image", str(image), "--text", TEXT,
                "--grid", "2x2", "--budget", "600", "--steps", "4", *PARAMS, "--out", str(report), "--plot",
                str(plot)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {report} and {plot}" in printed
    loaded = FaithfulnessReport.from_json(report.read_text())
    assert f"| F_syn | {loaded.f_syn:+.4f} |" in printed and json.loads(report.read_text())["f_syn"] == loaded.f_syn
    with Image.open(plot) as curves:
        assert curves.format == "PNG" and curves.width > 200


@pytest.mark.parametrize("command", ["faithfulness", "explain"])
def test_the_masking_options_reach_the_adapter_from_the_cli(command, tmp_path, capsys):
    image = tmp_path / "photo.png"
    image.write_bytes(png())
    backend = RecordingBackend()
    with adapters(backend) as [a], explainer({"syn": [a.address]}) as (e, _, _):
        out = tmp_path / ("r.json" if command == "faithfulness" else "o")
        assert cli([command, "--address", e.address, "--target", "syn", "--image", str(image), "--text", TEXT,
                    "--grid", "2x2", "--budget", "600", *PARAMS, "--baseline", "blur", "--blur-radius", "5",
                    "--text-mask", "[UNK]", "--out", str(out)]) == 0
    capsys.readouterr()
    assert backend.masking == [common_pb2.MaskingOptions(image_baseline=common_pb2.IMAGE_BASELINE_BLUR,
                                                         blur_radius=5.0, text_mask="[UNK]")]
