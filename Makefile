# Two commands set everything up on a fresh machine:
#   make book   builds the HTML course (and tells where to open it)
#   make test   runs every test (lint, the package's tests, every notebook, the grading pipeline)
# Both create .venv and install requirements.txt into it first.
# For authors (CONTRIBUTING.md): make test-fast, make lint, make sync, make notebooks [NB=...].

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Use the course files beside the checkout when they are there (CI, offline machines);
# otherwise the default cache (~/.cache/llm-course), filled on first use.
ifneq ($(wildcard ../shared/data/README.md),)
export LLM_COURSE_DATA ?= $(abspath ../shared/data)
endif

.PHONY: test test-fast lint sync notebooks book lab exercises bench bench-grading sandbox-note clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# pytest runs the unit tests under tests/ and executes every notebook under book/ with
# nbval, comparing each stored output (volatile ones are sanitised, see book/nbval_sanitize.cfg).
test: $(STAMP) lint sandbox-note
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-cell-timeout=900 \
		--nbval-sanitize-with book/nbval_sanitize.cfg tests book

# Grading runs each student's kernel in a bubblewrap sandbox (book/instructor_guide.md):
# say so when it is missing (the grading tests then skip, and autograde refuses to run).
sandbox-note:
	@command -v bwrap >/dev/null || echo "note: bubblewrap (bwrap) is not installed: the grading sandbox tests will be skipped and 'course_tools.grading autograde' will refuse to run; install it with: sudo apt install bubblewrap"

# The package's unit tests and the authoring checks: well under a minute. Leaves out what
# starts processes or runs notebooks (grading, DDP, benchmarks, nbval).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Notebooks and their text sources (book/_src/*.md, solutions/chNN/_src/*.py): the side
# changed last updates the other. NB=path limits it to one notebook (or its text source).
sync: $(STAMP)
	$(BIN)/python -m course_tools.notebooks sync $(NB)

# Re-execute book chapters (all, or NB=book/ch03_attention.ipynb) and store their outputs.
notebooks: $(STAMP)
	$(BIN)/python -m course_tools.notebooks execute $(NB)

book: $(STAMP)
	$(BIN)/jupyter-book build --warningiserror --keep-going .
	@echo
	@echo "The course is built: open file://$(abspath _build/html/index.html)"
	@echo "(search shows page snippets only over http: cd _build/html && python3 -m http.server, then http://127.0.0.1:8000)"
	@echo "To work through the notebooks: make lab"

lab: $(STAMP)
	$(BIN)/jupyter lab

exercises: $(STAMP)
	$(BIN)/python -m course_tools.grading generate

# The fast path against float32 and Hugging Face (124M shape, ~8 min), then chapter 5's run
# both ways (~4 min); JSON in benchmarks/results/latest/ (not committed). Run on a quiet machine.
BENCH_OUT ?= benchmarks/results/latest
bench: $(STAMP)
	mkdir -p $(BENCH_OUT)
	$(BIN)/python benchmarks/bench_gpt.py --json $(BENCH_OUT)/bench_gpt.json
	$(BIN)/python benchmarks/bench_chapter5.py --json $(BENCH_OUT)/bench_chapter5.json

# A class graded one at a time and in parallel, in the sandbox and without (~5 min).
bench-grading: $(STAMP) sandbox-note
	mkdir -p $(BENCH_OUT)
	$(BIN)/python benchmarks/bench_grading.py --json $(BENCH_OUT)/bench_grading.json

clean:
	rm -rf _build $(VENV)
