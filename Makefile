# cdiff: every target installs into .venv first when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cdiff-installed
CDIFF := $(VENV)/bin/cdiff
DEMO_RUN ?= runs/demo

.PHONY: install test test-all lint demo demo-train docs-images clean-demo app

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,app]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# cdiff studio on the shipped demo models (offline): http://127.0.0.1:7860 (APP_ARGS="--run runs/demo --port 8000").
APP_ARGS ?=
app: $(STAMP)
	$(CDIFF) app $(APP_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -q -m ''

lint: $(STAMP)
	$(PY) -m ruff check cdiff tests benchmarks
	$(PY) -m ruff format --check cdiff tests benchmarks

# The main job on the embedded default: the demo models shipped inside the package (trained on the synthetic
# faces), CPU, minutes. Puts the shipped models into $(DEMO_RUN) (unless it has models already, e.g. from
# demo-train) and the synthetic faces into $(DEMO_RUN)/data (unless there); generates faces for example pairs (the
# mask of one validation face, the caption of another) with every method side by side; visualises how the models
# shared the work; edits a validation photo by text, by mask and by both; evaluates every method on validation
# pairs; and writes $(DEMO_RUN)/report.html with all of it. Each step prints its time.
DEMO_OUT := $(DEMO_RUN)/samples
DEMO_PHOTO = $(DEMO_RUN)/examples/edit_photo.png
DEMO_TARGET_MASK = $(DEMO_RUN)/examples/edit_target_mask.png
DEMO_PAIRS ?= 100
DEMO_EVAL_SOLVER ?= --solver dpm --steps 20
DEMO_TRIPLES ?= 40
THREE_WAY := mask,text,sketch
DEMO_TARGET_TEXT = $$($(PY) -c "import json; print(json.load(open('$(DEMO_RUN)/examples/edit.json'))['target_text'])")
demo: $(STAMP)
	@set -e; start=$$(date +%s); \
	step() { t0=$$(date +%s); echo "== $$1"; shift; "$$@"; echo "   $$(( $$(date +%s) - t0 )) s"; }; \
	if [ -f $(DEMO_RUN)/diffuser/manifest.json ]; then echo "== models: already in $(DEMO_RUN)"; \
	else step "models: the shipped demo weights → $(DEMO_RUN)" $(CDIFF) import-demo --run $(DEMO_RUN); fi; \
	if [ ! -f $(DEMO_RUN)/data/manifest.json ]; then \
		step "data: the synthetic faces (validation pairs for the evaluation)" \
		$(CDIFF) prepare --config demo --run $(DEMO_RUN); fi; \
	if [ ! -f $(DEMO_RUN)/evaluator/manifest.json ]; then \
		step "evaluator: train the face parser and attribute classifier" \
		$(CDIFF) train-evaluator --config demo --run $(DEMO_RUN) --resume; fi; \
	rm -rf $(DEMO_OUT)/demo $(DEMO_OUT)/demo-three-way $(DEMO_RUN)/edits/demo-text $(DEMO_RUN)/edits/demo-mask \
		$(DEMO_RUN)/edits/demo-both; \
	step "generate: collaborative, composable, text only, mask only" \
		$(CDIFF) generate --run $(DEMO_RUN) --method all --num 2 --save-intermediates --out $(DEMO_OUT)/demo; \
	step "visualize: influence maps" \
		$(CDIFF) visualize $(DEMO_OUT)/demo/collaborative --image 000-000000 --image 001-000000 --image 002-000000; \
	step "edit: text" $(CDIFF) edit "$(DEMO_PHOTO)" --run $(DEMO_RUN) --target-text "$(DEMO_TARGET_TEXT)" \
		--out $(DEMO_RUN)/edits/demo-text; \
	step "edit: mask" $(CDIFF) edit "$(DEMO_PHOTO)" --run $(DEMO_RUN) --target-mask "$(DEMO_TARGET_MASK)" \
		--out $(DEMO_RUN)/edits/demo-mask; \
	step "edit: text and mask together (collaborative: the two edits combined, no optimising again)" \
		$(CDIFF) edit --from $(DEMO_RUN)/edits/demo-text --from $(DEMO_RUN)/edits/demo-mask --save-intermediates \
		--out $(DEMO_RUN)/edits/demo-both; \
	step "evaluate: every method on $(DEMO_PAIRS) validation pairs" $(CDIFF) evaluate --config demo --run $(DEMO_RUN) \
		--pairs $(DEMO_PAIRS) $(DEMO_EVAL_SOLVER) --force; \
	if [ -f $(DEMO_RUN)/diffuser-mask-sketch-text/manifest.json ]; then \
		step "generate: three-way (the mask, caption and sketch of three faces) next to each pair of experts" \
			$(CDIFF) generate --run $(DEMO_RUN) --modalities $(THREE_WAY) --method all --num 1 $(DEMO_EVAL_SOLVER) \
			--out $(DEMO_OUT)/demo-three-way; \
		step "evaluate: three-way on $(DEMO_TRIPLES) validation triples" $(CDIFF) evaluate --config demo \
			--run $(DEMO_RUN) --modalities $(THREE_WAY) --pairs $(DEMO_TRIPLES) $(DEMO_EVAL_SOLVER) \
			--out $(DEMO_RUN)/evaluation-three-way --force; \
	else echo "== three-way: skipped ($(DEMO_RUN) has no three-way diffusers: make clean-demo for the shipped ones, or cdiff train-diffuser --modalities $(THREE_WAY) --run $(DEMO_RUN))"; fi; \
	step "report" $(CDIFF) report --run $(DEMO_RUN) --force; \
	echo "== demo: $$(( $$(date +%s) - start )) s in all. Open:"; \
	echo "   $(DEMO_RUN)/report.html  (everything below on one page)"; \
	echo "   $(DEMO_RUN)/evaluation/report.html  (the evaluation, with sample rows)"; \
	echo "   $(DEMO_OUT)/demo/compare.html  (methods side by side)"; \
	echo "   $(DEMO_OUT)/demo-three-way/compare.html  (three-way next to each pair)"; \
	echo "   $(DEMO_OUT)/demo/collaborative/visualize/index.html  (influence maps)"; \
	echo "   $(DEMO_RUN)/edits/demo-{text,mask,both}/grid.png  (edits: photo, target, alpha sweep)"

# Train the demo models (and the evaluator models of cdiff evaluate) from scratch on the demo preset (CPU). Finished stages are kept and an
# interrupted stage resumes from its last checkpoint, so running it again continues where it stopped.
# Ends by writing the package's shipped demo weights (cdiff/weights/demo) from this run. Every stage runs with
# DEMO_THREADS (2) threads: CPU kernels round apart with another thread count, so this keeps the files the same on
# machines with more cores.
DEMO_THREADS ?= 2
demo-train: $(STAMP)
	@export OMP_NUM_THREADS=$(DEMO_THREADS) MKL_NUM_THREADS=$(DEMO_THREADS); start=$$(date +%s); \
	stage() { name=$$1; shift; t0=$$(date +%s); \
		if [ -f $(DEMO_RUN)/$$name/manifest.json ]; then echo "== $$name: done already ($(DEMO_RUN)/$$name)"; \
		else echo "== $$name"; "$$@" || exit $$?; echo "== $$name: $$(( $$(date +%s) - t0 )) s"; fi; }; \
	stage data $(CDIFF) prepare --config demo --run $(DEMO_RUN) && \
	stage vae $(CDIFF) train-vae --config demo --run $(DEMO_RUN) --resume && \
	stage text $(CDIFF) train-unimodal --modality text --config demo --run $(DEMO_RUN) --resume && \
	stage mask $(CDIFF) train-unimodal --modality mask --config demo --run $(DEMO_RUN) --resume --steps 3000 && \
	stage diffuser $(CDIFF) train-diffuser --config demo --run $(DEMO_RUN) --resume && \
	stage evaluator $(CDIFF) train-evaluator --config demo --run $(DEMO_RUN) --resume && \
	stage sketch $(CDIFF) train-unimodal --modality sketch --config demo --run $(DEMO_RUN) --resume --steps 2000 && \
	stage diffuser-mask-sketch-text $(CDIFF) train-diffuser --modalities $(THREE_WAY) --config demo --run $(DEMO_RUN) \
		--resume && \
	stage diffuser-mask-sketch $(CDIFF) train-diffuser --modalities mask,sketch --config demo --run $(DEMO_RUN) \
		--resume && \
	stage diffuser-sketch-text $(CDIFF) train-diffuser --modalities text,sketch --config demo --run $(DEMO_RUN) \
		--resume && \
	rm -rf $(DEMO_OUT)/demo-text $(DEMO_OUT)/demo-mask && \
	$(CDIFF) generate --method text --config demo --run $(DEMO_RUN) --num 4 --out $(DEMO_OUT)/demo-text && \
	$(CDIFF) generate --method mask --config demo --run $(DEMO_RUN) --num 4 --out $(DEMO_OUT)/demo-mask && \
	$(PY) -m cdiff.stages.demo_weights export $(DEMO_RUN) && \
	echo "== demo training: $$(( $$(date +%s) - start )) s in all"

# The pictures of README.md and docs/ that come from make demo, copied from $(DEMO_RUN) (run make demo first).
VIS = $(DEMO_OUT)/demo/collaborative/visualize/001-000000
DOCS_IMAGES = demo_compare.png:$(DEMO_OUT)/demo/compare.png demo_evaluation.png:$(DEMO_RUN)/evaluation/samples.png \
	demo_edit_text.png:$(DEMO_RUN)/edits/demo-text/grid.png demo_edit_mask.png:$(DEMO_RUN)/edits/demo-mask/grid.png \
	demo_edit_both.png:$(DEMO_RUN)/edits/demo-both/grid.png demo_influence_mask.png:$(VIS)/influence_mask.png \
	demo_influence_text.png:$(VIS)/influence_text.png demo_x0.png:$(VIS)/pred_x0.png demo_xt.png:$(VIS)/x_t.png \
	demo_animation.gif:$(VIS)/animation.gif demo_three_way.png:$(DEMO_OUT)/demo-three-way/compare.png \
	demo_three_way_evaluation.png:$(DEMO_RUN)/evaluation-three-way/samples.png
docs-images:
	@for pair in $(DOCS_IMAGES); do name=$${pair%%:*}; src=$${pair#*:}; \
		if [ -f "$$src" ]; then cp "$$src" docs/images/$$name && echo "docs/images/$$name ← $$src"; \
		else echo "skipped docs/images/$$name: no $$src"; fi; done

clean-demo:
	rm -rf $(DEMO_RUN)
