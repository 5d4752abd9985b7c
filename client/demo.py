"""``make demo``: the service end to end on one machine, offline.

Starts a synthetic adapter and the explainer in this process on free loopback ports,
explains a real photo (scikit-image's ``chelsea``, a cat) with the caption "a cat lying on
a couch" through the SDK, writes the heatmap PNG and the explanation JSON under ``out/``,
and prints the metrics. The synthetic game has closed-form truth, so the demo also prints
how far the estimate is from it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import numpy as np
from skimage import data

from multishap.adapters.server import serve_adapter
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.config import ExplainerConfig, TargetConfig
from multishap.service.explainer import serve_explainer
from multishap.service.wire import matrix_from_proto
from multishap.v1 import scorer_pb2, scorer_pb2_grpc

from .report import save, summary
from .sdk import ExplainerClient, build_instance

CAPTION = "a cat lying on a couch"
GRID = (4, 4)
BUDGET = 20_000
PARAMETERS = {"family": "unanimity-low", "seed": "7"}


def main(out_dir: str = "out") -> int:
    image = data.chelsea()
    adapter, _ = serve_adapter(SyntheticBackend())
    config = ExplainerConfig(targets={"synthetic": TargetConfig("synthetic", (adapter.address,))})
    explainer, servicer = serve_explainer(config)
    try:
        print(f"synthetic adapter on {adapter.address}, explainer on {explainer.address} "
              f"(metrics: http://127.0.0.1:{explainer.metrics_port}/metrics)")
        with ExplainerClient(explainer.address) as client:
            exp = client.explain(image, CAPTION, target="synthetic", answer="cat", grid=GRID, budget=BUDGET,
                                 parameters=PARAMETERS, progress=True)
        print()
        print(summary(exp))
        instance = build_instance(image, CAPTION, "cat", GRID, PARAMETERS)
        with grpc.insecure_channel(adapter.address) as channel:
            players = scorer_pb2_grpc.ScorerStub(channel).Describe(scorer_pb2.DescribeRequest(instance=instance))
        truth = matrix_from_proto(players.truth)
        error = np.linalg.norm(exp.phi - truth) / np.linalg.norm(truth)
        print(f"\nrelative error against the game's closed-form SII: {error:.4f}")
        json_path, png_path = save(exp, Path(out_dir), "chelsea")
        print(f"wrote {png_path} (heatmaps) and {json_path} (explanation)")
    finally:
        explainer.stop(None)
        servicer.close()
        adapter.stop(None)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
