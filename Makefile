# Every target bootstraps .venv itself: on a fresh clone `make test` is enough.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# The bench's own venv: the dependencies a user's `pip install 'billing-events[...]'` resolves today.
# (.venv holds jsonschema-rs below 0.61 because schemathesis pins it; a user gets the newest.)
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed-bench
MOCK_PORT ?= 8910
MOCK_TOKEN ?= test-token
export PYTHONPATH := $(CURDIR)/tests

.PHONY: install regenerate test lint typecheck mock contract demo bench clean redis-server FORCE

# The stamps hold the hash of pyproject.toml, not its mtime: a fresh clone or checkout of an
# unchanged pyproject.toml does not reinstall (and so cannot repoint the editable install).
$(STAMP): FORCE
	@hash=$$(sha256sum pyproject.toml | cut -d' ' -f1); \
	if [ "$$(cat $@ 2>/dev/null)" != "$$hash" ] || [ ! -x $(BIN)/python ]; then \
		set -e; \
		test -x $(BIN)/python || $(PY) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip; \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'; \
		echo "$$hash" > $@; \
	fi

$(BENCH_STAMP): FORCE
	@hash=$$(sha256sum pyproject.toml | cut -d' ' -f1); \
	if [ "$$(cat $@ 2>/dev/null)" != "$$hash" ] || [ ! -x $(BENCH_BIN)/python ]; then \
		set -e; \
		test -x $(BENCH_BIN)/python || $(PY) -m venv $(BENCH_VENV); \
		$(BENCH_BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip; \
		$(BENCH_BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager \
			-e '.[bench,mock,parquet,dask,spark,redis,otel]'; \
		echo "$$hash" > $@; \
	fi

FORCE:

install: $(STAMP)

regenerate: $(STAMP)
	$(BIN)/python specs/regenerate.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy overlays/billing_events

test: lint typecheck redis-server
	$(BIN)/python -m pytest

# The shared rate-budget tests start a real redis-server on loopback: Debian's package, installed when missing.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (Debian package) for the shared rate-budget tests"; \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	}

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Mock with faults + 30k events per provider through the CLI; prints the mock's count beside the sent count.
demo: $(STAMP)
	BIN=$(BIN) MOCK_PORT=$(MOCK_PORT) MOCK_TOKEN=$(MOCK_TOKEN) bash tests/demo/demo.sh

# Throughput, track() cost, queue memory and regenerate time; prints a table. Never part of `make test`.
bench: $(BENCH_STAMP) $(STAMP)
	REGENERATE_PYTHON=$(BIN)/python $(BENCH_BIN)/python -m bench.run

# `billing-events mock` on 127.0.0.1:$(MOCK_PORT); MOCK_FAULTS (JSON), MOCK_CATALOGUE and MOCK_LAGO_STORE configure it.
mock: $(STAMP)
	$(BIN)/billing-events mock --port $(MOCK_PORT) --token $(MOCK_TOKEN)

# Schemathesis suite against TOGAI_BASE_URL/TOGAI_API_TOKEN and LAGO_API_URL/LAGO_API_KEY when set, otherwise
# against the mock in-process. A real server RECEIVES THE GENERATED EVENTS: never point it at production.
contract: $(STAMP)
	@if [ -n "$$TOGAI_BASE_URL$$LAGO_API_URL" ]; then \
		echo "WARNING: this run creates events on: $${TOGAI_BASE_URL:+Togai $$TOGAI_BASE_URL }$${LAGO_API_URL:+Lago $$LAGO_API_URL}"; \
	else \
		echo "No TOGAI_BASE_URL / LAGO_API_URL set: running against the mock in-process."; \
	fi
	$(BIN)/python -m pytest tests/contract/test_contract_schemathesis.py -q
