# Two commands set everything up: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test install install-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Tests also cover LoRA training (tests/test_lora.py), so they install torch first: the
# exact CPU build these machines hold (a bare `torch` pulls gigabytes of CUDA), then the
# train, ray and parquet extras (about 30 s more). `make test TORCH= EXTRAS=test` installs
# only what the core needs; the LoRA, Ray and Parquet tests then skip.
TORCH  ?= torch==2.13.0
EXTRAS ?= test,train,ray,parquet

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(if $(TORCH),$(BIN)/python -m pip install --quiet '$(TORCH)')
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(BIN)/ouro run $(ARGS)

test: install-test
	$(BIN)/python -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
