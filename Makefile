# cdiff: every target installs into .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cdiff-installed
CDIFF := $(VENV)/bin/cdiff
DEMO_RUN ?= runs/demo

.PHONY: install test test-all lint demo demo-train clean-demo

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

# Train the demo models from scratch on the demo preset (CPU). Finished stages are kept and an
# interrupted stage resumes from its last checkpoint, so running it again continues where it stopped.
demo-train: $(STAMP)
	@start=$$(date +%s); \
	stage() { name=$$1; shift; t0=$$(date +%s); \
		if [ -f $(DEMO_RUN)/$$name/manifest.json ]; then echo "== $$name: done already ($(DEMO_RUN)/$$name)"; \
		else echo "== $$name"; "$$@" || exit $$?; echo "== $$name: $$(( $$(date +%s) - t0 )) s"; fi; }; \
	stage data $(CDIFF) prepare --config demo --run $(DEMO_RUN) && \
	stage vae $(CDIFF) train-vae --config demo --run $(DEMO_RUN) --resume && \
	stage text $(CDIFF) train-unimodal --modality text --config demo --run $(DEMO_RUN) --resume && \
	stage mask $(CDIFF) train-unimodal --modality mask --config demo --run $(DEMO_RUN) --resume --steps 3000 && \
	rm -rf $(DEMO_RUN)/samples/demo-text $(DEMO_RUN)/samples/demo-mask && \
	$(CDIFF) generate --modality text --config demo --run $(DEMO_RUN) --num 4 --out $(DEMO_RUN)/samples/demo-text && \
	$(CDIFF) generate --modality mask --config demo --run $(DEMO_RUN) --num 4 --out $(DEMO_RUN)/samples/demo-mask && \
	echo "== demo training: $$(( $$(date +%s) - start )) s in all"

clean-demo:
	rm -rf $(DEMO_RUN)
