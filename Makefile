PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test book check-book clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name cxrdrift --display-name "cxrdrift (Python 3)"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest

book: setup
	$(BIN)/cxrdrift book --profile demo

check-book: setup
	(command -v chromium && command -v chromedriver) >/dev/null || (apt-get update -q && apt-get install -y -q chromium chromium-driver)
	$(BIN)/python -m cxrdrift.book_check _build/html _build/screenshots

clean:
	rm -rf _build runs book/chapters
