# The two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test bench soak clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: install
	$(BIN)/media-pipeline serve --data-dir ./var

test: install
	$(BIN)/python -m pytest

bench: install
	@command -v wrk >/dev/null && command -v nginx >/dev/null || (apt-get update -qq && apt-get install -y -qq nginx-light wrk)
	$(BIN)/python bench/encoders.py
	$(BIN)/python bench/renditions.py
	$(BIN)/python bench/steps.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/origin.py
	$(BIN)/python bench/reprocess.py
	$(BIN)/python bench/dedupe_eval.py
	$(BIN)/python bench/dedupe_index.py

soak: install
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) var
