# The two commands that matter: `make demo` (a simulated train on the example fleet) and `make test`.
# Each creates the environments it needs: .venv (the project, Python 3.13 if pyenv has it) and .venv-sam
# (aws-sam-cli pins an older boto3, so it lives apart).
SHELL := /bin/bash
PYTHON ?= $(shell for p in "$(HOME)/.pyenv/versions/3.13.0/bin/python3" python3.13 python3.12 python3; do \
	command -v $$p >/dev/null 2>&1 && { command -v $$p; break; }; done)
VENV := .venv
SAM_VENV := .venv-sam
# sam build needs the function runtime's Python on PATH.
RUNTIME_PATH := $(shell for d in "$(HOME)/.pyenv/versions/3.13.0/bin"; do [ -x $$d/python3.13 ] && echo $$d:; done)

.PHONY: demo test lint typecheck unit sandbox e2e bench sam-build clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	touch $@

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q --upgrade pip
	$(SAM_VENV)/bin/pip install -q "aws-sam-cli>=1.120"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/trainctl simulate

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy
	# every handler is a module named `app`: check each folder on its own
	for d in functions/*/; do $(VENV)/bin/mypy --no-incremental "$$d/app.py" || exit 1; done

test: $(VENV)/.installed $(SAM_VENV)/.installed lint typecheck
	PATH="$(RUNTIME_PATH)$$PATH" SAM_CLI_TELEMETRY=0 $(VENV)/bin/python -m pytest -n 2 --dist loadgroup -q

unit: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q tests/unit

sandbox: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q tests/sandbox

e2e: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q tests/e2e

bench: $(VENV)/.installed
	$(VENV)/bin/python bench/train_bench.py
	$(VENV)/bin/python bench/hook_import.py
	$(VENV)/bin/python bench/heads_bench.py
	$(VENV)/bin/python bench/rollback_bench.py

sam-build: $(SAM_VENV)/.installed
	PATH="$(RUNTIME_PATH)$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam build --build-dir .aws-sam/build

# Optional, NOT part of `make test`: both traffic hooks under `sam local invoke`, in a container, with a local
# stand-in for the Lambda base image (no registry, no AWS). Needs root: installs docker.io/debootstrap if missing,
# starts (and stops) its own dockerd. tools/sam-local/README.md
.PHONY: sam-local
sam-local: $(SAM_VENV)/.installed
	RUNTIME_PATH="$(RUNTIME_PATH)" SAM="$(CURDIR)/$(SAM_VENV)/bin/sam" tools/sam-local/sam-local.sh

clean:
	rm -rf $(VENV) $(SAM_VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
