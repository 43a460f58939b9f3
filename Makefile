# cdiff: every target installs into .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cdiff-installed
CDIFF := $(VENV)/bin/cdiff
DEMO_RUN ?= runs/demo

.PHONY: install test test-all lint demo clean-demo

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

lint: $(STAMP)
	$(PY) -m ruff check cdiff tests benchmarks
	$(PY) -m ruff format --check cdiff tests benchmarks

# The main job on the embedded default: synthetic faces, CPU, minutes. Finished stages are kept.
demo: $(STAMP)
	@test -f $(DEMO_RUN)/data/manifest.json && echo "data: already prepared in $(DEMO_RUN)/data" \
		|| $(CDIFF) prepare --config demo --run $(DEMO_RUN)

clean-demo:
	rm -rf $(DEMO_RUN)
