# migctl — set-up, demo and tests. Each target creates .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := demo
MIGCTL := $(BIN)/migctl --db $(DEMO)/migctl.db --config $(DEMO)/migctl.toml

.PHONY: demo test bench fuzz clean

SCALE ?= 0.01

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
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@# The shipped templates plus the demo's own override folder (examples/email-delivery-changes).
	@{ echo 'templates_dir = "email_templates"'; cat examples/migctl.toml; } > $(DEMO)/migctl.toml
	@cp -R email_templates $(DEMO)/email_templates
	@cp -R examples/email-delivery-changes $(DEMO)/email_templates/email-delivery-changes
	@echo "== 1. check and load the definitions, import the sample accounts"
	$(MIGCTL) validate
	$(MIGCTL) sync
	$(MIGCTL) accounts import examples/accounts.csv
	@echo "== 2. status inside both grace periods"
	$(MIGCTL) --now 2016-04-20 status
	@echo "== 3. who would be told what, and why (writes nothing)"
	$(MIGCTL) --now 2016-04-20 notify --dry-run
	@echo "== 4. a real run with the file provider: one .eml per notice in $(DEMO)/outbox"
	$(MIGCTL) --now 2016-04-20 notify
	$(MIGCTL) --now 2016-04-20 opt-in email-delivery-changes --account acme-prod --reason "moved to SES"
	@ls $(DEMO)/outbox | head -5; echo "... $$(ls $(DEMO)/outbox | wc -l) .eml files"
	@echo "== 5. SES reports a bounce (a saved SNS notification): the address is suppressed"
	$(MIGCTL) --now 2016-04-21 feedback import examples/feedback/ses-bounce.json
	$(MIGCTL) suppress list
	@echo "== 6. rehearsal: what cron will do until after the mandatory date (writes nothing)"
	$(MIGCTL) --now 2016-04-21 plan --until 2016-05-20
	@echo "== 7. cron runs the day before and the day of 2016-05-11"
	$(MIGCTL) --now 2016-05-10 run
	$(MIGCTL) --now 2016-05-11 run
	$(MIGCTL) --now 2016-05-11 status email-delivery-changes
	@echo "== enforced notices written:"; ls $(DEMO)/outbox | grep enforced
	@echo "== 8. the adoption report: one offline HTML file with charts"
	$(MIGCTL) --now 2016-05-12 report --out $(DEMO)/report.html

test: $(VENV)/.installed-test
	$(BIN)/ruff check migrate_cli tests
	$(BIN)/ruff format --check migrate_cli tests
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python -m bench.run --scale $(SCALE) --out bench/out/scale-$(SCALE)

# A longer hypothesis run of the loaders and injection tests (about 10 minutes).
fuzz: $(VENV)/.installed-test
	MIGCTL_FUZZ=1 timeout 900 $(BIN)/python -m pytest tests/test_fuzz_loaders.py tests/test_injection.py -q -p no:cacheprovider

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
