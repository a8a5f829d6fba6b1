# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or refreshes .venv, builds the extension (release) and installs what it needs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

.PHONY: demo test venv build test-deps lint rust-test py-test bench bench-quick bench-rust clean
# The steps share one virtual environment: never run them concurrently (make -j).
.NOTPARALLEL:

demo: build
	$(BIN)/python -m ferroptim compare

test: test-deps build lint rust-test py-test bench-quick

venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "maturin>=1.9,<2" "numpy>=1.23"

build: venv
	$(BIN)/maturin develop --release -q --extras experiments

test-deps: venv
	rustup component add rustfmt clippy 2>/dev/null || true
	$(BIN)/python -m pip install -q "pytest>=8" "ruff>=0.6" "mypy>=1.10" torch \
		"nbclient>=0.7" "nbformat>=5" "ipykernel>=6"

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/python -m mypy python/ferroptim
	$(BIN)/python -m mypy.stubtest ferroptim._core

rust-test:
	cargo test

py-test:
	$(BIN)/python -m pytest -q

# The side-by-side benchmark (a few minutes); tables in benches/results/.
bench: build
	$(BIN)/python -m pip install -q torch
	$(BIN)/python benches/bench_step.py

# The same script on tiny shapes, in seconds: run by `make test` so it cannot rot.
bench-quick:
	$(BIN)/python benches/bench_step.py --quick

# Criterion benches of the Rust kernels (bytes/s per kernel, size and dtype).
bench-rust:
	cargo bench --bench kernels

clean:
	rm -rf $(VENV) target python/ferroptim/*.so
