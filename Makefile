# Ratchet: `make run` to try it, `make test` to check it. See README.md.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-engine-sqlite bench chaos lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(PY) manage.py run_stack $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest
	@if [ -n "$$DATABASE_URL" ] && [ "$${DATABASE_URL#sqlite}" = "$$DATABASE_URL" ]; then \
		$(MAKE) --no-print-directory test-engine-sqlite; fi

# The engine also runs on SQLite (the default database): its in-process tests run there too, and
# the real-worker tests of the durability contract (SIGKILL mid-step, Redis flushed, a worker
# killed mid-fan-out). The chaos runs, the thousand-item map and the other real-worker tests prove
# the rest on PostgreSQL, the production database (`make chaos` runs chaos on any database).
SQLITE_REAL_WORKERS := tests/integration/test_durability.py tests/integration/test_parallel_workers.py
test-engine-sqlite: $(STAMP)
	DATABASE_URL= $(PY) -m pytest -p no:cacheprovider -m "engine and not scale and not chaos and not integration"
	DATABASE_URL= $(PY) -m pytest -p no:cacheprovider -m "not chaos" $(SQLITE_REAL_WORKERS)

# The bench extra (LangGraph and its PostgreSQL checkpointer, which manage.py bench measures).
$(VENV)/.bench-installed: $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $@

bench: $(VENV)/.bench-installed
	DATABASE_URL="$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ratchet_bench}" $(PY) manage.py bench $(BENCH_ARGS)
	DATABASE_URL="$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ratchet_bench}" $(PY) manage.py bench_step
	DATABASE_URL="$${PAGES_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/ratchet_pages_bench}" $(PY) manage.py bench_pages
	$(PY) manage.py bench_designer

chaos: $(STAMP)
	$(PY) manage.py chaos --strict --runs 200 --workers 3 --kill-every 2 --pause-every 5 --flush-redis-every 15

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) var/*.sqlite3* var/redis
