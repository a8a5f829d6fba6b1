# The two set-up commands of the README: `make demo` and `make test`.
# Each creates or refreshes .venv, builds the extension (release) and installs what it needs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export VIRTUAL_ENV := $(CURDIR)/$(VENV)

.PHONY: demo test docs notebooks venv build test-deps lint rust-test valgrind py-test mpi-deps mpi-test bench bench-quick bench-distributed bench-rust clean wheel wheel-install wheel-test bench-abi3 mypy
# The steps share one virtual environment: never run them concurrently (make -j).
.NOTPARALLEL:

demo: build
	$(BIN)/python -m ferroptim compare

test: test-deps wheel-install lint rust-test valgrind py-test wheel-test mpi-test bench-quick docs

venv:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "maturin>=1.9.4,<2" "numpy>=1.23"

build: venv
	$(BIN)/maturin develop --release -q --extras experiments

# One wheel for every CPython >= 3.9 (the stable ABI: the `abi3` cargo feature) and every
# Linux with glibc >= 2.17 (manylinux2014), linked by zig (the `ziglang` package) against
# glibc 2.17's symbols, into dist/. check_wheel.py confirms the tag with `auditwheel show`
# and that LICENSE is inside.
WHEEL_GLOB := dist/ferroptim-*-cp39-abi3-manylinux*.whl
wheel: venv
	$(BIN)/python -m pip install -q "ziglang>=0.13" "auditwheel>=6"
	rm -f $(WHEEL_GLOB)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/maturin build --release -q --features abi3 --zig \
		--compatibility manylinux2014 --out dist
	$(BIN)/python tests/wheel/check_wheel.py $(WHEEL_GLOB)

# `make test` tests the wheel: installed into .venv with the experiments extra, in place of
# `make build`'s build, so that one release build serves all of its steps.
wheel-install: wheel
	$(BIN)/python -m pip uninstall -q -y ferroptim
	$(BIN)/python -m pip install -q "$$(ls $(WHEEL_GLOB))[experiments]"

# The wheel in a fresh virtual environment of every CPython 3.9-3.13 this machine has
# (pyenv's, or python3.X on PATH; a missing one is reported and skipped), with NumPy from
# PyPI: the README's quickstart and tests/wheel/smoke.py (SGD and Adam against NumPy).
wheel-test:
	$(BIN)/python tests/wheel/check_wheel.py --install $(WHEEL_GLOB)

# The documentation site (docs/conf.py: Sphinx, the README's sections, the docstrings and the
# notebooks, executed) into site/html/ (myst-nb keeps the executed notebooks beside it, in
# site/jupyter_execute/), with every warning an error; installs the `docs` extra.
# Uses the ferroptim installed in .venv (make build's, or the wheel under make test).
docs: venv
	$(BIN)/python -c 'import ferroptim' 2>/dev/null || $(MAKE) --no-print-directory build
	$(EXTRA) docs | xargs -d '\n' $(BIN)/python -m pip install -q
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs site/html

# Re-executes examples/*.ipynb in place: they are committed with their outputs.
notebooks: build
	$(BIN)/python -m pip install -q "nbclient>=0.7" "nbformat>=5" "ipykernel>=6"
	$(BIN)/python examples/execute.py

# Open MPI (Debian's packages, when mpirun is missing and apt-get can: root) and mpi4py, for
# the MPI tests, the data-parallel example's test and the distributed benchmark.
mpi-deps: venv
	@command -v mpirun >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null; } \
		|| { echo "mpirun is missing and could not be installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 1; }
	$(BIN)/python -m pip install -q "mpi4py>=4"

# The requirements of an extra of pyproject.toml (`$(EXTRA) test`), one a line, read without
# building the package (tomllib, or pip's own copy of tomli before Python 3.11).
EXTRA := $(BIN)/python -c 'import importlib, sys; \
	toml = importlib.import_module("tomllib" if sys.version_info >= (3, 11) else "pip._vendor.tomli"); \
	print(*toml.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"][sys.argv[1]], sep="\n")'

# The `test` extra, the one list of what the tests, lints and wheel checks need.
test-deps: venv mpi-deps
	rustup component add rustfmt clippy 2>/dev/null || true
	$(EXTRA) test | xargs -d '\n' $(BIN)/python -m pip install -q

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(MAKE) --no-print-directory mypy
	$(BIN)/python -m mypy.stubtest ferroptim._core
	$(BIN)/actionlint .github/workflows/*.yml

# mypy at the package's oldest Python, 3.9 (pyproject's python_version), in a venv of that
# Python with the NumPy and matplotlib that install there: NumPy >= 2.1's stubs assume a newer
# Python, and mypy 2.4 checks 3.10 code at the oldest. Without a CPython 3.9 (pyenv's, or
# python3.9 on PATH), mypy checks at .venv's Python instead, and says so.
PY39 := $(firstword $(wildcard $(shell pyenv root 2>/dev/null || echo $(HOME)/.pyenv)/versions/3.9.*/bin/python3.9) \
	$(shell command -v python3.9 2>/dev/null))
MYPY_VENV := .venv-py39
mypy:
	@if [ -n "$(PY39)" ] && $(PY39) -c "" 2>/dev/null; then \
		test -x $(MYPY_VENV)/bin/python || $(PY39) -m venv $(MYPY_VENV); \
		$(MYPY_VENV)/bin/python -m pip install -q --disable-pip-version-check "mypy>=1.10,<2" numpy matplotlib \
		&& echo "mypy at Python 3.9 ($(PY39))" && $(MYPY_VENV)/bin/python -m mypy python/ferroptim; \
	else v=$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
		echo "no CPython 3.9 here: mypy checks at .venv's Python $$v"; \
		$(BIN)/python -m mypy --python-version $$v python/ferroptim; fi

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

# Per-step time of the abi3 wheel against the version-specific build (`make build`'s), each
# in its own process, alternating (a minute or two); the table is printed.
bench-abi3: build wheel
	rm -rf target/bench-abi3
	$(BIN)/python -m pip install -q --no-deps --target target/bench-abi3 $(WHEEL_GLOB)
	$(BIN)/python benches/bench_abi3.py --other target/bench-abi3

# Criterion benches of the Rust kernels (bytes/s per kernel, size and dtype).
bench-rust:
	cargo bench --bench kernels

clean:
	rm -rf $(VENV) $(MYPY_VENV) target dist python/ferroptim/*.so site docs/_generated
