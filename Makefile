# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/convspec zoo
	$(BIN)/convspec summary alexnet_paper
	$(BIN)/convspec check -q specs/*.yaml
	$(BIN)/convspec compile alexnet_paper -o build/alexnet_paper.onnx --force
	$(BIN)/convspec run build/alexnet_paper.onnx --top 3
	$(BIN)/convspec bench lenet5 --runs 20

# The test reference: PyTorch (a local CPU build) and torchvision's model definitions, never a
# runtime dependency. If they cannot be installed, the parity tests skip and say why.
REFERENCE := $(VENV)/.reference

$(REFERENCE): $(STAMP)
	-$(BIN)/python -m pip install -q torch==2.13.0 && $(BIN)/python -m pip install -q --no-deps torchvision==0.28.0
	touch $(REFERENCE)

# pytest exits 5 when it collects nothing; that must fail, and it does (any non-zero fails make).
test: $(STAMP) $(REFERENCE)
	$(BIN)/python -m pytest -rs

bench: $(STAMP)
	$(BIN)/python bench/bench_cli.py

# Regenerate the registry-derived files (schema and the layer table in docs/spec.md).
docs: $(STAMP)
	$(BIN)/python -m compiler.docgen --write

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
