# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or refreshes .venv, builds the extension (release) and installs what it needs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

.PHONY: demo test venv build test-deps lint rust-test valgrind py-test mpi-deps mpi-test bench bench-quick bench-distributed bench-rust clean
# The steps share one virtual environment: never run them concurrently (make -j).
.NOTPARALLEL:

demo: build
	$(BIN)/python -m ferroptim compare

test: test-deps build lint rust-test valgrind py-test mpi-test bench-quick

venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "maturin>=1.9,<2" "numpy>=1.23"

build: venv
	$(BIN)/maturin develop --release -q --extras experiments

# Open MPI (Debian's packages, when mpirun is missing and apt-get can: root) and mpi4py, for
# the MPI tests, the data-parallel example's test and the distributed benchmark.
mpi-deps: venv
	@command -v mpirun >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null; } \
		|| { echo "mpirun is missing and could not be installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 1; }
	$(BIN)/python -m pip install -q "mpi4py>=4"

test-deps: venv mpi-deps
	rustup component add rustfmt clippy 2>/dev/null || true
	$(BIN)/python -m pip install -q "pytest>=8" "hypothesis>=6.100" "ruff>=0.6" "mypy>=1.10" torch expecttest \
		"nbclient>=0.7" "nbformat>=5" "ipykernel>=6"
	# references of tests/test_conventions.py: optax on jax (CPU wheels) and Keras 3 on the jax backend
	$(BIN)/python -m pip install -q "jax>=0.4.30" "optax>=0.2.4" "keras>=3.8"

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/python -m mypy python/ferroptim
	$(BIN)/python -m mypy.stubtest ferroptim._core

rust-test:
	cargo test

# The Rust unit tests (kernels, scheduler, pool) under valgrind's memcheck: invalid reads and
# writes, uninitialised values and definite leaks fail the build. The rayon pool's threads
# live for the whole process, so its "possibly lost" stacks are not errors. Uses the debug
# test binary `rust-test` just built (overflow checks on, no second compile). Without
# valgrind, installs it when apt-get can (root), else says so and skips.
VALGRIND := valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --track-origins=yes -q
valgrind:
	@command -v valgrind >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get install -y -qq valgrind >/dev/null 2>&1; } || true
	@if command -v valgrind >/dev/null; then \
		bin=$$(cargo test --lib --no-run --message-format=json 2>/dev/null \
			| $(BIN)/python -c "import json, sys; print([m['executable'] for m in map(json.loads, sys.stdin) if m.get('executable')][-1])") \
		&& echo "valgrind $$bin" && $(VALGRIND) "$$bin" -q --test-threads=2; \
	else echo "valgrind is not installed and could not be installed: skipping the memcheck run"; fi

py-test:
	$(BIN)/python -m pytest -q

# The MPI tests (tests/mpi, left out of py-test) under mpirun with 2 and 3 ranks on this host.
# Without mpirun, installs Open MPI when apt-get can (root), else fails; mpi4py goes into the
# venv. Every rank runs pytest on the same files, and tests/mpi/conftest.py keeps the ranks'
# outcomes in lockstep; `timeout` bounds the run should a rank hang anyway. One kernel thread
# per rank, as the ranks already share the cores; no openib (InfiniBand) probing, and no
# single-copy shared memory, which containers without ptrace rights refuse.
MPIRUN := timeout 900 mpirun --oversubscribe --allow-run-as-root --mca btl ^openib \
	--mca btl_vader_single_copy_mechanism none -x FERROPTIM_NUM_THREADS=1
MPI_PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider tests/mpi
mpi-test: mpi-deps
	$(MPIRUN) -n 2 $(MPI_PYTEST)
	$(MPIRUN) -n 3 $(MPI_PYTEST)

# The side-by-side benchmark (a few minutes); tables in benches/results/.
bench: build
	$(BIN)/python -m pip install -q torch
	$(BIN)/python benches/bench_step.py
	$(BIN)/python benches/bench_torch.py

# The same scripts on tiny shapes, in seconds: run by `make test` so they cannot rot. The
# distributed one needs Open MPI's mpirun and mpi4py (the `mpi` extra); without them it is skipped.
bench-quick:
	$(BIN)/python benches/bench_step.py --quick
	$(BIN)/python benches/bench_torch.py --quick
	@if command -v mpirun >/dev/null && $(BIN)/python -c "import mpi4py" 2>/dev/null; then \
		$(BIN)/python benches/bench_distributed.py --quick; \
	else echo "bench_distributed --quick skipped: it needs mpirun (Open MPI) and mpi4py"; fi

# Data-parallel Adam on 1, 2 and 4 ranks (mpirun): step time, bytes communicated and
# optimizer state per rank; table in benches/results/distributed.md (a few minutes).
bench-distributed: build mpi-deps
	$(BIN)/python benches/bench_distributed.py

# Criterion benches of the Rust kernels (bytes/s per kernel, size and dtype).
bench-rust:
	cargo bench --bench kernels

clean:
	rm -rf $(VENV) target python/ferroptim/*.so
