"""The self-contained HTML report, opened in real headless Chromium: it loads with no console error and no
network, the token picker swaps the overlay (the screenshot changes where the photo is), hostile token text stays
text, the dataset page's splits count the right rows, and `multishap report` writes both pages."""

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from multishap.client.audit_results import ModelAnswer
from multishap.client.cli import main
from multishap.client.explanation import Explanation, FaithfulnessReport, Target, Unimodal, Usage
from multishap.client.provenance import Provenance
from multishap.client.report_page import dataset_page, explanation_page, write_page
from multishap.service.audit import ModalityInfluence, PerturbationStability, StabilityResult
from multishap.service.math.metrics import instance_metrics

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
HOSTILE = "</script><img src=x onerror=alert(1)>"
GRID = (3, 4)


def photo() -> np.ndarray:
    """A 120x160 RGB photo: a smooth gradient with a bright disc, so the page has something to draw over."""
    y, x = np.mgrid[0:120, 0:160]
    disc = ((y - 60) ** 2 + (x - 80) ** 2 < 35 ** 2) * 90
    return np.stack([x * 1.2 + disc, y * 1.5 + disc, 255 - x * 1.2], axis=-1).clip(0, 255).astype(np.uint8)


def explanation(image=photo(), tokens=("cat", "couch", HOSTILE), correct=True, f_syn=0.6) -> Explanation:
    """A full audited explanation: "cat" works with the left half of the photo, "couch" against it and with the
    right half, so the two tokens' overlays differ everywhere."""
    rows, cols = GRID
    left = np.tile(np.arange(cols) < cols // 2, rows).astype(float)
    phi = np.stack([left * 0.8, (1 - left) * 0.6 - left * 0.5, np.full(rows * cols, 0.05)], axis=1)
    phi = phi[:, :len(tokens)]
    alphas = np.linspace(0, 1, 6)
    influence = ModalityInfluence(np.linspace(-0.2, 0.4, 12), np.linspace(0.1, -0.1, 12), np.array([0.5, -0.2, 0.1]),
                                  np.array([0.3, 0.1, 0.0]), image_on_text=0.42, text_on_image=0.17,
                                  redundancy_flag=False, v_full=2.0, v_empty=0.1, v_image_only=0.7, v_text_only=0.6,
                                  exact=True, evaluations=64)
    stability = StabilityResult(0.91, 0.8, {"seed": PerturbationStability(0.95, 1.0),
                                            "jpeg": PerturbationStability(0.87, 0.6)},
                                top_k=2, kept_entries=30, total_entries=36, repeats=2, z=2.0)
    faithfulness = FaithfulnessReport(
        f_syn=f_syn, f_ins=0.7, f_del=0.1, f_syn_unclipped=f_syn, f_syn_raw=0.3, alphas=alphas,
        curve_ins=alphas ** 0.5, curve_del=1 - alphas ** 0.5, visual=Unimodal(0.6, 0.2, 0.4),
        text=Unimodal(0.5, 0.3, 0.2), macro_per_step=None, macro_auc=None, evaluations=120,
        patch_scores=np.zeros(12), token_scores=np.zeros(len(tokens)), tokens=list(tokens), seconds=0.1)
    return Explanation(
        phi=phi, stderr=np.full_like(phi, 0.01), tokens=list(tokens), grid=GRID, metrics=instance_metrics(phi),
        shapley=None, v_full=2.0, v_empty=0.1, v_image_only=0.7, v_text_only=0.6, modality_interaction=0.8,
        evaluations=512, seconds=0.4, seed=7, method="kernel", index="sii", budget=512,
        target=Target("synthetic", ["127.0.0.1:50051"], "synthetic-mlp", "logit of the answer"),
        usage=Usage(requests=3, prompt_tokens=40, completion_tokens=3), cost=512, cost_unit="coalitions",
        provenance=Provenance(text=f"a cat on a couch {HOSTILE}", answer="yes", parameters={"family": "mlp"},
                              image_name="cat.png", image_sha256="ab" * 32, tool_version="test"),
        answer=ModelAnswer("cat", how="argmax over 2 candidates", candidates=("cat", "dog"), scores=(0.9, 0.1),
                           ground_truth="cat" if correct else "dog", judged=correct is not None,
                           correct=bool(correct)),
        influence=influence, stability=stability, faithfulness=faithfulness, image=image)


@pytest.fixture(scope="module")
def driver():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI", "").lower() != "true":
            pytest.skip("chromium and chromedriver are not installed (make system-deps installs them)")
        pytest.fail("CI must have chromium and chromedriver: make system-deps installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1280,1400", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    options.binary_location = str(CHROMIUM)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager never downloads: the driver and browser are given
        browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    yield browser
    browser.quit()


def open_page(driver, path: Path) -> list[dict]:
    """Load the page and return its console messages."""
    driver.get(path.resolve().as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    return driver.get_log("browser")


def assert_clean(driver, logs: list[dict], html: str) -> None:
    """No console error, nothing loaded but data: URLs, no alert, and no http(s) reference in the page."""
    assert not [m for m in logs if m["level"] == "SEVERE"], logs
    resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(name.startswith("data:") for name in resources), resources
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert driver.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text


def overlay_pixels(driver) -> np.ndarray:
    """The screenshot's pixels where the photo and its overlay are."""
    rect = driver.execute_script("const r = document.querySelector('.stage').getBoundingClientRect();"
                                 "return [r.left, r.top, r.width, r.height, window.devicePixelRatio]")
    left, top, width, height, ratio = rect
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    box = [round(v * ratio) for v in (top, top + height, left, left + width)]
    return shot[box[0]:box[1], box[2]:box[3]]


def click(driver, index: int):
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.CSS_SELECTOR, f'.picker button[data-index="{index}"]')
    button.click()
    return button


def shown(driver) -> list[str]:
    return driver.execute_script("return [...document.querySelectorAll('.overlay')].filter(i => !i.hidden)"
                                 ".map(i => i.dataset.index)")


def test_the_explanation_page_loads_offline_and_the_picker_swaps_the_overlay(driver, tmp_path):
    html = explanation_page(explanation(), title="audit of cat.png")
    logs = open_page(driver, write_page(html, tmp_path / "page.html"))
    assert_clean(driver, logs, html)
    assert shown(driver) == ["3"]  # all tokens (sum) first
    whole = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    assert len(np.unique(whole.reshape(-1, 3), axis=0)) > 200
    cat = click(driver, 0)
    assert shown(driver) == ["0"] and cat.get_attribute("aria-pressed") == "true"
    a = overlay_pixels(driver)
    couch = click(driver, 1)
    assert shown(driver) == ["1"] and couch.get_attribute("aria-pressed") == "true"
    assert cat.get_attribute("aria-pressed") == "false"
    b = overlay_pixels(driver)
    assert a.shape == b.shape and a.size > 300 * 200 * 3
    differ = np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > 30
    assert differ.mean() > 0.5, differ.mean()
    assert "couch" in driver.find_element("id", "ms-showing").text
    assert not [m for m in driver.get_log("browser") if m["level"] == "SEVERE"]


def test_the_picker_works_from_the_keyboard(driver, tmp_path):
    from selenium.webdriver.common.keys import Keys

    open_page(driver, write_page(explanation_page(explanation()), tmp_path / "page.html"))
    click(driver, 0).send_keys(Keys.ARROW_RIGHT)
    assert shown(driver) == ["1"]
    assert driver.execute_script("return document.activeElement.dataset.index") == "1"
    driver.switch_to.active_element.send_keys(Keys.ARROW_LEFT, Keys.ARROW_LEFT)
    assert shown(driver) == ["3"]


def test_hostile_token_text_renders_as_text(driver, tmp_path):
    html = explanation_page(explanation(), title=HOSTILE)
    assert HOSTILE not in html
    logs = open_page(driver, write_page(html, tmp_path / "page.html"))
    assert_clean(driver, logs, html)
    assert click(driver, 2).text == repr(HOSTILE)
    assert HOSTILE in driver.find_element("id", "ms-showing").text
    assert driver.title == HOSTILE and HOSTILE in driver.find_element("tag name", "h1").text
    assert driver.execute_script("return document.scripts.length") == 2


@pytest.mark.parametrize("token", ["<!--<script>", "<!-- </script x>", "&lt;/script&gt;"])
def test_a_token_that_opens_a_comment_or_script_leaves_the_page_working(driver, tmp_path, token):
    html = explanation_page(explanation(tokens=("cat", "couch", token)))
    logs = open_page(driver, write_page(html, tmp_path / "page.html"))
    assert_clean(driver, logs, html)
    assert driver.execute_script("return document.scripts.length") == 2
    assert click(driver, 2).text == repr(token)
    assert token in driver.find_element("id", "ms-showing").text


def test_without_a_photo_the_page_says_so_and_still_draws_the_overlay(driver, tmp_path):
    exp = explanation(image=None)
    exp.answer = exp.influence = exp.stability = exp.faithfulness = None
    html = explanation_page(exp)
    logs = open_page(driver, write_page(html, tmp_path / "page.html"))
    assert_clean(driver, logs, html)
    assert "No photo was recorded" in driver.find_element("tag name", "main").text
    ids = driver.execute_script("return [...document.querySelectorAll('section')].map(s => s.id)")
    assert ids == ["heatmap", "provenance"]
    click(driver, 0)
    a = overlay_pixels(driver)
    click(driver, 1)
    assert (np.abs(a.astype(int) - overlay_pixels(driver).astype(int)).sum(axis=2) > 30).mean() > 0.5


def test_a_dry_run_page_of_zeros_draws_clear_overlays():
    exp = explanation()
    exp.phi, exp.dry_run = np.zeros_like(exp.phi), True
    html = explanation_page(exp)
    assert "dry run: Φ is zeros" in html and "scale ±0)" in html
    assert html.count('class="overlay"') == len(exp.tokens) + 1


def results_file(tmp_path: Path) -> Path:
    """A dataset results file: 4 explained instances (2 correct, 1 incorrect, 1 not judged; 2 true, 2 foil
    targets), one failure, and an earlier failure of an instance that later succeeded."""
    lines = [{"id": "d", "key": "k", "error": "it timed out"}]
    for row_id, correct, role in (("a", True, "true"), ("b", True, "foil"), ("c", False, "true"), ("d", None, "foil")):
        exp = explanation(correct=correct, f_syn=0.5 if correct else 0.2)
        exp.role = role
        lines.append({"id": row_id, "key": "k", "text": "a cat", "answer": "yes", "role": role,
                      "explanation": exp.to_dict()})
    lines.append({"id": "e", "key": "k", "error": f"image {HOSTILE} could not be decoded"})
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_report_writes_a_dataset_page_whose_splits_count_the_right_rows(driver, tmp_path, capsys):
    path = results_file(tmp_path)
    assert main(["report", str(path), "--title", "audit-1"]) == 0
    out = Path(capsys.readouterr().out.strip())
    assert out == path.with_suffix(".html")
    html = out.read_text(encoding="utf-8")
    logs = open_page(driver, out)
    assert_clean(driver, logs, html)
    counts = driver.execute_script("return [...document.querySelectorAll('table.splits tbody tr')]"
                                   ".map(r => [r.cells[0].textContent, r.cells[1].textContent])")
    assert dict(counts) == {"all": "4", "correct": "2", "incorrect": "1", "true": "2", "foil": "2"}
    ids = driver.execute_script("return [...document.querySelectorAll('table.rows tbody tr')].map(r => r.cells[0]"
                                ".textContent)")
    assert sorted(ids) == ["a", "b", "c", "d"]
    failures = driver.find_element("css selector", "table.failures").text
    assert "e" in failures and HOSTILE in failures and "timed out" not in failures


def test_dataset_page_from_a_report(tmp_path):
    from multishap.client.cli.report import read_results
    from multishap.client.dataset import results_report

    report = results_report(read_results(results_file(tmp_path)))
    assert [s.name for s in report.splits] == ["all", "correct", "incorrect", "true", "foil"]
    html = dataset_page(report)
    assert "MSR [95% CI]" in html and f"{report.msr:.3f}" in html and HOSTILE not in html


def test_report_draws_an_explanation_json_over_the_image_given(driver, tmp_path, capsys):
    exp = explanation()
    (tmp_path / "exp.json").write_text(exp.to_json())
    Image.fromarray(photo()).save(tmp_path / "cat.png")
    out = tmp_path / "page.html"
    assert main(["report", str(tmp_path / "exp.json"), "--image", str(tmp_path / "cat.png"), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text(encoding="utf-8")
    assert "No photo was recorded" not in html
    assert_clean(driver, open_page(driver, out), html)
    photo_colours = overlay_pixels(driver).reshape(-1, 3)
    assert len(np.unique(photo_colours, axis=0)) > 100  # the gradient photo, not a grey canvas

    assert main(["report", str(tmp_path / "exp.json")]) == 0
    assert "No photo was recorded" in (tmp_path / "exp.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("content, says", [
    (None, "does not exist"),
    ('{"hello": 1}', "neither an explanation JSON file nor a dataset results file"),
    (b"\xff\xfe\x00garbage", "could not read"),
    ("[" * 100_000 + "]" * 100_000, "neither an explanation JSON file"),
    ('{"id": "a", "key": "k", "explanation": null}', "neither an explanation JSON file"),
    ('{"id": "a", "key": "k", "explanation": {"metrics": {}}}', "not a readable results file (KeyError"),
])
def test_report_refuses_a_missing_or_unknown_file_in_one_line(tmp_path, capsys, content, says):
    path = tmp_path / "results.json"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert not path.with_suffix(".html").exists()


def test_report_refuses_what_is_not_a_regular_file_or_is_too_large(tmp_path, capsys, monkeypatch):
    import os

    from multishap.client.cli import report

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path, Path("/dev/zero")):
        assert main(["report", str(path), "-o", str(tmp_path / "out.html")]) == 2
        assert "not a regular file" in capsys.readouterr().err
    big = tmp_path / "big.jsonl"
    big.write_text("x" * 2048)
    monkeypatch.setattr(report, "MAX_RESULTS_BYTES", 1024)
    assert main(["report", str(big)]) == 2
    assert "over the" in capsys.readouterr().err and not big.with_suffix(".html").exists()


def test_write_page_replaces_a_page_whole(tmp_path):
    out = tmp_path / "page.html"
    out.write_text("old")
    assert write_page("<p>é</p>", out) == out
    assert out.read_bytes() == "<p>é</p>".encode("utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]
