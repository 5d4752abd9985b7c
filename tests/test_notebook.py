"""The README's SDK snippet, run as is in a real Jupyter kernel against a real explainer: results display inline."""

import json
import re
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from servers import adapters, explainer

README = Path(__file__).resolve().parent.parent / "README.md"
README_ADDRESS = "127.0.0.1:50050"  # the only thing replaced in the snippet: the explainer's real address
KERNEL = "multishap-test"


def sdk_snippet() -> str:
    """The python block of the README's service section that uses the SDK."""
    section = README.read_text().split("\n## The service\n", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "import ExplainerClient" in b]
    assert len(blocks) == 1, "the README's service section should have one python block using the SDK"
    return blocks[0]


def kernel_spec(root: Path) -> Path:
    """A Jupyter data folder whose one kernel runs ipykernel on this interpreter, so no Jupyter setup is needed."""
    folder = root / "kernels" / KERNEL
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "multishap test", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return root


def outputs(cell, mime: str) -> list[str]:
    return [o["data"][mime] for o in cell.outputs if mime in o.get("data", {})]


def test_readme_snippet_runs_in_a_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(kernel_spec(tmp_path / "jupyter")))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's default, inline, as in a fresh notebook
    work = tmp_path / "work"
    work.mkdir()
    (work / "cat.png").write_bytes(png(64, 48))  # the snippet's image, in the kernel's working folder
    with adapters(SyntheticBackend()) as (a,), explainer({"synthetic": [a.address]}) as (e, _, _):
        code = sdk_snippet()
        assert code.count(README_ADDRESS) == 1
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source) for source in (
            code.replace(README_ADDRESS, e.address), "exp", "exp.plot()", "exp.to_dataframe()")]
        NotebookClient(nb, kernel_name=KERNEL, timeout=120, resources={"metadata": {"path": str(work)}}).execute()
    snippet, shown, plotted, frame = nb.cells
    assert (work / "heatmap.png").stat().st_size > 1000
    assert len((work / "results.jsonl").read_text().splitlines()) == 2
    [html] = outputs(shown, "text/html")
    assert "synergy ratio" in html and "strongest synergy" in html and "data:image/png;base64," in html
    assert len(outputs(plotted, "image/png")) == 1  # shown once, as the cell's value
    [table] = outputs(frame, "text/plain")
    assert "[80 rows x 7 columns]" in table and "stderr" in table  # 4x4 patches x 5 tokens
    assert outputs(snippet, "text/html"), "the snippet's last line, a loaded explanation, displays as HTML"
