PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The lock: every package at an exact version with its hashes, for CPython 3.11 (3.11.5 or later) on
# Linux x86-64. requirements/cpu.lock holds the dependencies and the `dev` extra, requirements/gpu.lock
# adds the `gpu` extra (`make setup LOCK=requirements/gpu.lock` in a fresh clone). `make lock` writes
# both from pyproject.toml, keeping every pin that still fits; `make lock UPGRADE=1` moves them all to
# the newest versions the ranges allow. tests/test_lock.py fails when pyproject.toml and the lock or
# the venv and the lock disagree.
LOCK ?= requirements/cpu.lock
PIP_VERSION := 26.3
UV_VERSION := 0.13.9
LOCK_TOOLS := .lock-tools
COMPILE = $(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --quiet --python-version 3.11.5 \
	--python-platform x86_64-unknown-linux-gnu --generate-hashes $(if $(UPGRADE),--upgrade)
CHECK_PYTHON := import sys; sys.exit(None if sys.version_info[:2] == (3, 11) and sys.version_info >= (3, 11, 5) \
	else f'$(LOCK) is for Python 3.11.5 or a later 3.11; $(PYTHON) is {sys.version.split()[0]}: run make PYTHON=python3.11')

.PHONY: setup lock test book check-book clean

setup: $(STAMP)

# Exactly the locked versions, hash-checked (pip fails on a package the lock lacks), then cxrdrift
# itself without dependencies and without build isolation (it builds with the locked setuptools).
# (PYTHONWARNINGS: setuptools warns on every editable install that a folder named like the package
# could shadow it; that folder is the package.) The stamp names the lock, so tests/test_lock.py
# compares the venv with the right one.
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c "$(CHECK_PYTHON)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m ipykernel install --sys-prefix --name cxrdrift --display-name "cxrdrift (Python 3)"
	echo $(LOCK) > $(STAMP)

lock:
	@$(PYTHON) -c "$(CHECK_PYTHON)"
	test -d $(LOCK_TOOLS) || $(PYTHON) -m venv $(LOCK_TOOLS)
	$(LOCK_TOOLS)/bin/python -m pip install --quiet uv==$(UV_VERSION)
	$(COMPILE) --extra dev --output-file requirements/cpu.lock
	$(COMPILE) --extra gpu --extra dev --output-file requirements/gpu.lock

test: setup
	$(BIN)/python -m pytest

book: setup
	$(BIN)/cxrdrift book --profile demo

check-book: setup
	(command -v chromium && command -v chromedriver) >/dev/null || (apt-get update -q && apt-get install -y -q chromium chromium-driver)
	$(BIN)/python -m cxrdrift.book_check _build/html _build/screenshots

clean:
	rm -rf _build runs book/chapters
