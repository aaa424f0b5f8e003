# Set-up and checks. `make demo` and `make test` each create .venv and install everything on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first, alone: 2.13.0 is a CPU wheel on this project's machines; a plain `torch` requirement
# would pull a multi-GB CUDA build. On a GPU box: make test TORCH_SPEC="torch"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow bench-quick bench style quality clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# the main job on the embedded default: build the shipped `tiny` family (3 members, a few minutes on 2 CPU cores)
DEMO_OUT ?= demo_out/tiny
demo: $(STAMP)
	$(BIN)/hf-progressive build-family --recipe tiny --out $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q -n auto --dist loadfile  # one worker per core, a test file per worker

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

# the paper's comparison on ../shared/data/gutenberg (bench/reproduce.py): 6 arms (independent, independent_wsd,
# progressive, trunk, apollo, apollo+trunk), each searching one LR ladder by one bracketing rule, then 2 seeds;
# resumable (rerun after any stop). On 2 CPU cores: quick (8 tokens/param) under 2 h; full (40 tokens/param) 6-7 h
bench-quick: $(STAMP)
	$(BIN)/python bench/reproduce.py --quick

bench: $(STAMP)
	$(BIN)/python bench/reproduce.py
	$(BIN)/python bench/throughput.py

style: $(STAMP)
	$(BIN)/python -m pip install -q ruff
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

quality: $(STAMP)
	$(BIN)/python -m pip install -q ruff
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
