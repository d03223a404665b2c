# Two commands do all set-up on a fresh machine:
#   make demo   -- the end-to-end demo on the embedded default
#   make test   -- the default test tier
# Both create .venv and install idempotently (a stamp file records the install).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.jaxseg-installed
PYTEST_ARGS ?=

.PHONY: install demo base test test-slow lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	# torch first, pinned: the CPU wheel (a bare `torch` pulls a multi-GB CUDA build).
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[torch,tfds,dev]"
	# sam2's metadata asks for torchvision, which would replace the CPU torch: no deps.
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-deps "sam2==1.1.0"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/jaxseg demo

# the grounded base (configs/synthetic_base.py): resumes runs/base, ships jaxseg/assets/qwen3_vl_tiny
# when its held-out grounding beats the shipped one (hours on 2 CPU cores; re-run to continue)
base: $(STAMP)
	$(BIN)/jaxseg base --workdir runs/base

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check jaxseg tests bench
	$(BIN)/ruff format --check jaxseg tests bench

bench: $(STAMP)
	$(BIN)/jaxseg bench --help

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
