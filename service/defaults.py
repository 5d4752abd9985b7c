"""Every default of multishap in one module: the servers, the SDK and the CLI read them here.

It imports nothing, so every layer may import it. Limits (what a server refuses) live in
:class:`multishap.service.rpc.config.Limits`; these are the values used when a caller says nothing.
"""

from __future__ import annotations

# Explanation requests.
GRID = (7, 7)                       # patch grid, rows x columns
METHOD = "auto"                     # estimator (see multishap.service.math.estimators.registry)
INDEX = "SII"                       # interaction index
SEED = 0
BUDGET = 20_000                     # distinct coalitions when a request says 0
SERVER_BUDGET = 0                   # what clients send by default: 0 asks for the server's BUDGET
MAX_BATCH = 4096                    # coalitions per value-function call in the library

# Faithfulness requests.
FAITHFULNESS_EXPLAINER = "multishap"
FAITHFULNESS_STEPS = 10
FAITHFULNESS_EPS = 0.05
MACRO_CHUNKS = 6

# Dataset runs (SDK and CLI).
DATASET_CONCURRENCY = 4             # instances explained at once
RESULTS_FILE = "results.jsonl"

# Server-side jobs: where `multishap serve` stores them when no store is configured.
JOB_STORE_FILE = "~/.local/state/multishap/jobs.db"

# Transport.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
EXPLAINER_ADDRESS = "127.0.0.1:50050"
EXPLAINER_PORT = 50050
ADAPTER_PORT = 50051

# Client retries of a refusal that carries google.rpc.RetryInfo.
MAX_RETRIES = 3
MAX_RETRY_DELAY_S = 30.0

# Command-line servers (`multishap serve`, `multishap adapter KIND`, `multishap simulator`): their
# ports, chosen apart so that one of each runs on one machine, and their Prometheus ports, away
# from Prometheus' 9090 and Alertmanager's 9093.
EXPLAINER_METRICS_PORT = 9460
ADAPTER_PORTS = {"synthetic": ADAPTER_PORT, "hf": 50052, "openai": 50053}
ADAPTER_METRICS_PORTS = {"synthetic": 9461, "hf": 9462, "openai": 9463}
SIMULATOR_PORT = 50054             # HTTP, the simulated chat endpoint
