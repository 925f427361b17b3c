# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check bench docs clean lock cuda

# Every install goes through constraints.txt, the exact versions the suite passed with: a release
# made tomorrow cannot change what a fresh clone gets. convspec itself is installed without build
# isolation, so the setuptools that builds it is the pinned one too.
PIP    := $(BIN)/python -m pip
PINNED := -c constraints.txt

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q $(PINNED) pip setuptools
	$(PIP) install -q $(PINNED) --no-build-isolation -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/convspec zoo
	$(BIN)/convspec summary alexnet_paper
	$(BIN)/convspec check -q specs/*.yaml
	$(BIN)/convspec compile alexnet_paper -o build/alexnet_paper.onnx --force
	$(BIN)/convspec run build/alexnet_paper.onnx --top 3
	$(BIN)/convspec bench lenet5 --runs 20
	$(BIN)/convspec diagram googlenet -o build/googlenet.svg --force
	$(BIN)/convspec diagram resnet50 --collapse -o build/resnet50.png --force

# The test reference: PyTorch (a local CPU build) and torchvision's model definitions, never a
# runtime dependency. If they cannot be installed, the parity tests skip and say why.
REFERENCE := $(VENV)/.reference

# tritonclient too, without its dependencies: the tests parse `export --triton`'s config.pbtxt with
# Triton's own ModelConfig protobuf definition (its generated module needs only protobuf).
$(REFERENCE): $(STAMP)
	-$(PIP) install -q $(PINNED) torch && $(PIP) install -q $(PINNED) --no-deps torchvision
	-$(PIP) install -q $(PINNED) --no-deps tritonclient
	touch $(REFERENCE)

# Refresh the pins: resolve pyproject.toml's ranges afresh in a scratch venv and write what they
# give to constraints.txt. Then run `make clean test` and commit constraints.txt if it passes.
LOCK := .venv-lock
lock:
	rm -rf $(LOCK) && $(PYTHON) -m venv $(LOCK)
	$(LOCK)/bin/python -m pip install -q --upgrade pip setuptools
	$(LOCK)/bin/python -m pip install -q -e '.[test]' torch==2.13.0
	$(LOCK)/bin/python -m pip install -q --no-deps torchvision==0.28.0 tritonclient
	{ sed -n '/^#/p' constraints.txt; $(LOCK)/bin/python -m pip freeze --all --exclude-editable | grep -v '^#'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf $(LOCK)

# The whole suite, on two workers (pytest-xdist). pytest exits 5 when it collects nothing; that
# must fail, and it does (any non-zero fails make).
WORKERS ?= 2
test: $(STAMP) $(REFERENCE)
	$(BIN)/python -m pytest -rs -n $(WORKERS)

# The quick loop between two edits: everything but the tests marked slow (whole-library compiles,
# torchvision parity, fuzzing, real signals).
check: $(STAMP)
	$(BIN)/python -m pytest -rs -n $(WORKERS) -m "not slow"

# CUDA 13 and cuDNN 9 from the nvidia wheels (several GB), for a machine with an NVIDIA driver and no
# system CUDA; runtime/session.py preloads them. Then: convspec bench resnet50 --device cuda
cuda: $(STAMP)
	$(PIP) install -q $(PINNED) --no-build-isolation -e '.[cuda]'

# The benchmark suite (docs/performance.md): writes build/bench.md and prints it; several minutes.
# Then the start-up timings of the fast paths. `make bench BENCH=--quick` is the smoke test.
# The torch columns need the test reference (torch, torchvision); without it they are skipped.
BENCH ?=
bench: $(STAMP) $(REFERENCE)
	$(BIN)/python bench/suite.py $(BENCH)
	$(BIN)/python bench/bench_cli.py

# Regenerate the registry-derived files (schema and the layer table in docs/spec.md).
docs: $(STAMP)
	$(BIN)/python -m compiler.docgen --write

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
