# Two front doors: `make demo` (set up + run the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" "setuptools<81" wheel
	# The CPU wheel first: a bare torch requirement could pull a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/selm-bench train-and-eval

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

# Every speed figure of issue 10 (about 10 minutes on an idle 2-core CPU; two default runs are most of it):
# a table with bounds, and results/bench/latest.json. BENCH_ARGS="--only 10,11 --quick" for a part.
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_speed.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
