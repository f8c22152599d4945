# Every target does all of its own set-up on a fresh Debian machine (as root, or with sudo):
# the system packages hf-slm needs, a .venv, and `pip install -e '.[dev]'`. Each step is skipped
# when it is already done, so a second run starts the job at once.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hf-slm-installed
# espeak-ng speaks the corpus (and brings libespeak-ng for word timings), ffmpeg's libraries
# decode audio for torchcodec and datasets, wamerican is the word list that nonwords must avoid,
# chromium is the headless browser the Spaces' browser test drives (through Playwright).
APT_PACKAGES := espeak-ng ffmpeg wamerican chromium

export HF_HUB_OFFLINE := 1
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup system-deps test lint format demo zoo bench clean

setup: system-deps $(STAMP)

system-deps:
	@missing=""; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v ffmpeg >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	[ -f /usr/share/dict/words ] || missing="$$missing wamerican"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi

$(STAMP): pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest

# the slm-zoo Space (all three families as tabs) on the bundled zoo, offline, at http://127.0.0.1:7860
demo: setup
	GRADIO_SERVER_NAME=$${GRADIO_SERVER_NAME:-127.0.0.1} GRADIO_SERVER_PORT=$${GRADIO_SERVER_PORT:-7860} \
	  $(BIN)/python spaces/slm-zoo/app.py

# rebuild every zoo folder from its recipe in modeling/recipes (hours on 2 CPU cores; --dry-run to see the plan)
zoo: setup
	$(BIN)/hf-slm zoo build

bench: setup
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
