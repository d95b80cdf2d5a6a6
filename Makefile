# Two commands set everything up on a fresh machine:
#   make book   builds the HTML course (and tells where to open it)
#   make test   runs every test
# Both create .venv and install requirements.txt into it first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Use the course files beside the checkout when they are there (CI, offline machines);
# otherwise the default cache (~/.cache/llm-course), filled on first use.
ifneq ($(wildcard ../shared/data/README.md),)
export LLM_COURSE_DATA ?= $(abspath ../shared/data)
endif

.PHONY: test book lab exercises bench clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# pytest runs the unit tests under tests/ and executes every notebook under book/ with
# nbval, comparing each stored output (volatile ones are sanitised, see book/nbval_sanitize.cfg).
test: $(STAMP)
	$(BIN)/python -m pytest --nbval --nbval-current-env --nbval-cell-timeout=900 \
		--nbval-sanitize-with book/nbval_sanitize.cfg tests book

book: $(STAMP)
	$(BIN)/jupyter-book build --warningiserror --keep-going .
	@echo
	@echo "The course is built: open file://$(abspath _build/html/index.html)"
	@echo "To work through the notebooks: make lab"

lab: $(STAMP)
	$(BIN)/jupyter lab

exercises: $(STAMP)
	$(BIN)/python -m reference_impl.grading generate

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_gpt.py

clean:
	rm -rf _build $(VENV)
