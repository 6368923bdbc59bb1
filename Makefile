# The entry points people remember: run, test, lint, bench, lab, clean.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-containers lint bench lab proto clean

$(STAMP): pyproject.toml constraints.txt setup.py $(wildcard protos/chainrule/rpc/v1/*.proto)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

## make run: start the local stack (embedded Redis), train the digits example with 2 workers
run: $(STAMP)
	$(BIN)/chainrule up --workers 2 --submit examples/digits.json

## make lab: train small problems with every activation, derivative on and off (one process)
lab: $(STAMP)
	$(BIN)/chainrule lab activations --out docs/lab

## make test: the whole suite (unit, property, integration), from a fresh clone
test: $(STAMP)
	$(BIN)/python -m pytest

## make test-containers: build the image and run compose stacks for real (tests/containers);
## where no Docker engine runs it starts one (as root), with local base images if no registry
test-containers: $(STAMP)
	eval "$$(bash deploy/ci/docker.sh)" && CHAINRULE_TEST_CONTAINERS=1 $(BIN)/python -m pytest tests/containers -v -s

## make proto: regenerate the gRPC stubs after editing protos/ (the install does it too)
proto: $(STAMP)
	$(BIN)/python protos/generate.py

lint: $(STAMP)
	$(BIN)/ruff check services tests
	$(BIN)/ruff format --check services tests
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python tests/benchmarks/bench_mlp.py
	$(BIN)/python tests/benchmarks/bench_transport.py
	$(BIN)/python tests/benchmarks/bench_training.py
	$(BIN)/python tests/benchmarks/bench_uploads.py

clean:
	rm -rf $(VENV) .chainrule .pytest_cache .mypy_cache .ruff_cache .hypothesis build *.egg-info services/*.egg-info services/chainrule/rpc/v1/*_pb2*
