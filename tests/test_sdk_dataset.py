"""DatasetReport.to_dataframe: one row per instance asked for, finished or failed, from a real run."""

import sys

import pytest

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import ExplainerClient
from servers import TEXT, adapters, explainer

PARAMS = {"family": "mixed", "seed": "1"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    records = [{"id": f"i{k}", "image": png(seed=k), "text": TEXT, "parameters": PARAMS} for k in range(2)]
    records.append({"id": "junk", "image": b"not an image", "text": TEXT})
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}) as (e, _, _):
        with ExplainerClient(e.address, timeout=60) as client:
            yield client.explain_dataset(records, target="syn", out=tmp_path_factory.mktemp("run") / "results.jsonl",
                                         grid=(2, 2), budget=300, progress=False)


def test_one_row_per_instance_with_metrics_evaluations_usage_and_errors(report):
    frame = report.to_dataframe()
    assert list(frame["id"]) == ["i0", "i1", "junk"]
    assert {"synergy_ratio", "total", "evaluations", "seconds", "requests", "cost", "error"} <= set(frame.columns)
    done = frame[frame["error"].isna()]
    assert list(done["id"]) == ["i0", "i1"] and list(done["synergy_ratio"]) == [r["synergy_ratio"] for r in report.rows]
    assert (done["evaluations"] > 0).all() and (done["requests"] == 0).all()
    [error] = frame.loc[frame["id"] == "junk", "error"]
    assert "could not be decoded" in error and frame.loc[frame["id"] == "junk", "synergy_ratio"].isna().all()


def test_without_pandas_it_says_what_to_install(report, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'multishap\[notebook\]'"):
        report.to_dataframe()
