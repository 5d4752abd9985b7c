"""``make demo``: the service end to end on one machine, offline, on a real model.

Starts the ``imagenet-zeroshot`` adapter (EfficientNet-Lite0 x MiniLM, real pretrained
weights installed from packages) and the explainer in this process on free loopback
ports, explains a real photo (scikit-image's ``chelsea``, a cat) with the caption "a cat
lying on a couch" through the SDK, audited: the model's own choice among three captions
(correct when it picks the true one), modality influence and F_syn of the explanation. It
writes the heatmap PNG, the explanation JSON and the self-contained HTML report under
``out/`` and prints the metrics. Then it explains the same instance again with a budget in
encoder passes (``budget_unit="cost"``: the ``product`` design), as a server-side job stored in
``out/jobs.db`` (SQLite), and compares what each cost and how precise each is. A few minutes on 2 CPU cores at the defaults.

Usage: python -m multishap.client.demo [OUT_DIR] [--grid 4x4] [--budget 10000] [--passes 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from skimage import data

from multishap.adapters.hf import load_backend
from multishap.adapters.server import serve_adapter
from multishap.service.rpc.config import ExplainerConfig, JobSettings, TargetConfig
from multishap.service.explainer import serve_explainer

from .report import save, summary
from .sdk import ExplainerClient

CAPTION = "a cat lying on a couch"
CANDIDATES = (CAPTION, "a dog lying on a couch", "a cup of coffee on a table")
INFLUENCE_BUDGET = 2048


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Explain a real photo with a real model, offline.")
    parser.add_argument("out", nargs="?", default="out", help="output folder (default: out)")
    parser.add_argument("--grid", default="4x4", help="patch grid, rows x columns (default: 4x4)")
    parser.add_argument("--budget", type=int, default=10_000, help="coalitions to score (default: 10000)")
    parser.add_argument("--passes", type=int, default=1_000,
                        help="encoder passes for the product-design explanation (default: 1000; 0: skip it)")
    args = parser.parse_args(argv)
    rows, cols = (int(x) for x in args.grid.lower().split("x"))

    start = time.perf_counter()
    backend = load_backend("imagenet-zeroshot")
    adapter, _ = serve_adapter(backend)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = ExplainerConfig(targets={"zeroshot": TargetConfig("zeroshot", (adapter.address,), max_batch=512,
                                                               max_in_flight=1)},
                             jobs=JobSettings(store=f"sqlite:///{out / 'jobs.db'}", workers=1))
    explainer, servicer = serve_explainer(config)
    try:
        print(f"model {backend.model_id} loaded in {time.perf_counter() - start:.1f} s; adapter on "
              f"{adapter.address}, explainer on {explainer.address} "
              f"(metrics: http://127.0.0.1:{explainer.metrics_port}/metrics)")
        shared = dict(target="zeroshot", answer="cat", grid=(rows, cols), progress=True)
        with ExplainerClient(explainer.address) as client:
            exp = client.explain(data.chelsea(), CAPTION, budget=args.budget, candidates=CANDIDATES,
                                 ground_truth=CAPTION, role="true", influence_budget=INFLUENCE_BUDGET,
                                 faithfulness=True, **shared)
            print()
            print(summary(exp))
            images, texts = exp.usage.image_encodes, exp.usage.text_encodes
            print(f"\nencoder passes: {images} images + {texts} texts for {exp.evaluations} coalitions "
                  f"({2 * exp.evaluations / (images + texts):.1f}x fewer than encoding both inputs of every coalition)")
            cat = exp.tokens.index("cat") if "cat" in exp.tokens else int(np.argmax(np.abs(exp.phi).sum(axis=0)))
            column = exp.phi[:, cat].reshape(rows, cols)
            print(f"Φ of {exp.tokens[cat]!r} over the grid (rows top to bottom):")
            for r in range(rows):
                print("   " + " ".join(f"{v:+.4f}" for v in column[r]))
            json_path, png_path = save(exp, out, "chelsea")
            page = exp.save_html(out / "chelsea-report.html", title="chelsea: a cat lying on a couch")
            print(f"wrote {png_path} (heatmaps) and {json_path} (explanation)")
            print(f"wrote the HTML report {page.resolve()} (open it in a browser; it loads nothing from the network)")
            if args.passes:
                job = client.submit_explain(data.chelsea(), CAPTION, budget=args.passes, budget_unit="cost",
                                            **shared)
                product = job.result()
                print(f"\nthe same with a budget of {args.passes} encoder passes ({product.method} design), run as "
                      f"job {job.id} and stored in {out / 'jobs.db'} (`multishap serve --job-store "
                      f"sqlite:///{out / 'jobs.db'}` serves it again: `multishap jobs get {job.id}`):")
                for label, e in (("coalition budget", exp), ("encoder-pass budget", product)):
                    print(f"  {label:20s} {e.method:8s} {e.cost:7.0f} {e.cost_unit} for {e.evaluations:7d} "
                          f"coalitions, largest standard error {float(np.max(e.stderr)):.4f}")
    finally:
        explainer.stop(None)
        servicer.close()
        adapter.stop(None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
