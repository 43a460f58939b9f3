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

# The main job on the embedded default: synthetic faces, the demo models shipped inside the package, CPU, minutes.
# Prepares the data, puts the shipped models into the run (unless it has models already, e.g. from demo-train),
# generates faces from validation (mask, caption) pairs collaboratively and with the fixed-weight baseline, and
# visualises how the two models shared the work.
DEMO_OUT := $(DEMO_RUN)/samples
demo: $(STAMP)
	@set -e; start=$$(date +%s); \
	if [ -f $(DEMO_RUN)/data/manifest.json ]; then echo "== data: already prepared in $(DEMO_RUN)/data"; \
	else echo "== data"; $(CDIFF) prepare --config demo --run $(DEMO_RUN); fi; \
	if [ -f $(DEMO_RUN)/diffuser/manifest.json ]; then echo "== models: already in $(DEMO_RUN)"; \
	else echo "== models"; $(CDIFF) import-demo --run $(DEMO_RUN); fi; \
	rm -rf $(DEMO_OUT)/demo-collaborative $(DEMO_OUT)/demo-composable; \
	echo "== generate: collaborative"; \
	$(CDIFF) generate --config demo --run $(DEMO_RUN) --num 4 --save-intermediates --out $(DEMO_OUT)/demo-collaborative; \
	echo "== generate: composable (fixed equal weights, the paper's baseline)"; \
	$(CDIFF) generate --config demo --run $(DEMO_RUN) --method composable --num 4 --out $(DEMO_OUT)/demo-composable; \
	echo "== visualize"; \
	$(CDIFF) visualize $(DEMO_OUT)/demo-collaborative --image 000-000000.png --image 001-000000.png; \
	echo "== demo: $$(( $$(date +%s) - start )) s. Open $(DEMO_OUT)/demo-collaborative/visualize/index.html"

# Train the demo models from scratch on the demo preset (CPU). Finished stages are kept and an
# interrupted stage resumes from its last checkpoint, so running it again continues where it stopped.
# Ends by writing the package's shipped demo weights (cdiff/weights/demo) from this run.
demo-train: $(STAMP)
	@start=$$(date +%s); \
	stage() { name=$$1; shift; t0=$$(date +%s); \
		if [ -f $(DEMO_RUN)/$$name/manifest.json ]; then echo "== $$name: done already ($(DEMO_RUN)/$$name)"; \
		else echo "== $$name"; "$$@" || exit $$?; echo "== $$name: $$(( $$(date +%s) - t0 )) s"; fi; }; \
	stage data $(CDIFF) prepare --config demo --run $(DEMO_RUN) && \
	stage vae $(CDIFF) train-vae --config demo --run $(DEMO_RUN) --resume && \
	stage text $(CDIFF) train-unimodal --modality text --config demo --run $(DEMO_RUN) --resume && \
	stage mask $(CDIFF) train-unimodal --modality mask --config demo --run $(DEMO_RUN) --resume --steps 3000 && \
	stage diffuser $(CDIFF) train-diffuser --config demo --run $(DEMO_RUN) --resume && \
	rm -rf $(DEMO_OUT)/demo-text $(DEMO_OUT)/demo-mask && \
	$(CDIFF) generate --method text --config demo --run $(DEMO_RUN) --num 4 --out $(DEMO_OUT)/demo-text && \
	$(CDIFF) generate --method mask --config demo --run $(DEMO_RUN) --num 4 --out $(DEMO_OUT)/demo-mask && \
	$(PY) -m cdiff.stages.demo_weights export $(DEMO_RUN) && \
	echo "== demo training: $$(( $$(date +%s) - start )) s in all"

clean-demo:
	rm -rf $(DEMO_RUN)
