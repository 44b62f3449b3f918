# The two commands: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where `make run` keeps the catalog, storage and queue (a test points it at a temp folder).
DATA_DIR ?= ./var

# The whole dependency tree, pinned with hashes, resolved for CPython 3.11 on Linux x86_64:
# requirements-test.lock (runtime + the `test` extra) for make install and CI, requirements.lock
# (runtime only, the same versions) for the Docker image. `make lock` refreshes both.
LOCK := requirements-test.lock
RUNTIME_LOCK := requirements.lock
LOCK_TOOL := .venv-lock
UV_VERSION := 0.13.9
LOCK_TARGET := --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-config \
	--custom-compile-command 'make lock'
# `make lock` keeps every pin that still fits pyproject.toml; LOCK_ARGS=--upgrade takes the newest
# releases within its ranges, LOCK_ARGS='--upgrade-package kombu' just one.
LOCK_ARGS ?=

.PHONY: install lock run test bench soak clean

install: $(VENV)/.installed

# A new lock makes a new venv: packages a lock no longer lists must not linger in it.
$(VENV)/.deps: $(LOCK)
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"'
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(LOCK)
	touch $@

# The project itself, built by the locked setuptools rather than whatever an isolated build fetches;
# pip check fails when pyproject.toml asks for something the lock does not give (run `make lock`).
$(VENV)/.installed: $(VENV)/.deps pyproject.toml
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

lock: $(LOCK_TOOL)/bin/uv
	$(LOCK_TOOL)/bin/uv pip compile pyproject.toml requirements-build.in --extra test $(LOCK_TARGET) $(LOCK_ARGS) -o $(LOCK)
	$(LOCK_TOOL)/bin/uv pip compile pyproject.toml requirements-build.in -c $(LOCK) $(LOCK_TARGET) -o $(RUNTIME_LOCK)

$(LOCK_TOOL)/bin/uv:
	$(PYTHON) -m venv $(LOCK_TOOL)
	$(LOCK_TOOL)/bin/pip install --quiet uv==$(UV_VERSION)

run: install
	$(BIN)/media-pipeline serve --data-dir $(DATA_DIR)

test: install
	$(BIN)/python -m pytest

bench: install
	@command -v wrk >/dev/null && command -v nginx >/dev/null || (apt-get update -qq && apt-get install -y -qq nginx-light wrk)
	$(BIN)/python bench/encoders.py
	$(BIN)/python bench/renditions.py
	$(BIN)/python bench/quality.py --corpus 20 --camera 6 --heic 3
	$(BIN)/python bench/quality_encoders.py --photos 12 --score 76 80
	$(BIN)/python bench/quality_search.py --target avif=78.3 jpeg=78.2 --follow avif=jpeg
	$(BIN)/python bench/steps.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/origin.py
	$(BIN)/python bench/reprocess.py
	$(BIN)/python bench/importer.py
	$(BIN)/python bench/dedupe_eval.py
	$(BIN)/python bench/dedupe_index.py
	$(BIN)/python bench/events.py
	$(BIN)/python bench/uploads.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/hdr.py ../shared/testdata/formats/jpeg/ultra-hdr.jpg ../shared/testdata/formats/heic/iphone_13_pro_max.HEIC

soak: install
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) $(LOCK_TOOL) var
