# migctl — set-up, demo and tests. Each target creates .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
MIGCTL := $(BIN)/migctl --db $(DEMO)/migctl.db --config $(DEMO)/migctl.toml

.PHONY: demo test lint bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	@rm -rf $(DEMO) && mkdir -p $(DEMO) && cp examples/migctl.toml $(DEMO)/migctl.toml
	$(MIGCTL) validate
	$(MIGCTL) sync
	$(MIGCTL) accounts import examples/accounts.csv
	$(MIGCTL) --now 2016-04-20 status
	$(MIGCTL) --now 2016-04-20 opt-in email-delivery-changes --account acme-prod --reason "switched to SES"
	$(MIGCTL) --now 2016-04-20 status email-delivery-changes

test: $(VENV)/.installed-test
	$(BIN)/ruff check migrate_cli tests
	$(BIN)/ruff format --check migrate_cli tests
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache
