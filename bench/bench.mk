# Benchmark targets; included by the top-level Makefile (uses its VENV and BIN).
#
#   make bench              everything below, ~9-11 min on a 2-core machine
#   make bench QUICK=1      a short smoke run of the same (~1 min)
#   make bench-workloads    W1/W2 against the baseline relay and the real server, ratio real/relay,
#                           with the Peer-based generator and with the lean one (bench/lean_load.py)
#   make bench-workers      one server process against --workers 2, alternating runs, ratio 2/1
#   make bench-archive | bench-init | bench-login-storm | bench-online | bench-audience
#   make bench-profile      py-spy profile of the real server under W1 (installs py-spy into .venv)
#   make bench-trace        where a W1 send's wall time goes (SQL round trips, fsync, queueing)
#
# Every benchmark prints a table and ends with one JSON line; `make bench` also keeps the
# whole output in $(BENCH_LOG). ARGS adds options to a single bench-* target, e.g.
# `make bench-workloads ARGS="--workloads W1 --repeat 9"` (each script has --help).
.PHONY: bench bench-workloads bench-workers bench-archive bench-init bench-login-storm bench-online bench-audience bench-profile bench-trace

QUICK ?=
ARGS ?=
BENCH_LOG ?= var/bench/last-run.log
BENCH_PY = $(BIN)/python
BENCH_QUICK = $(if $(QUICK),--quick)

bench: SHELL := /bin/bash
bench: $(VENV)/.installed
	@mkdir -p $(dir $(BENCH_LOG))
	@{ \
	  echo "== make bench $(if $(QUICK),QUICK=1) — $$(date -u +%FT%TZ), $$(nproc) cores, $$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"; \
	  $(MAKE) -k --no-print-directory bench-workloads bench-workers bench-archive bench-init bench-login-storm bench-online bench-audience; \
	} 2>&1 | tee $(BENCH_LOG); exit $${PIPESTATUS[0]}
	@echo "(full output in $(BENCH_LOG))"

bench-workloads: $(VENV)/.installed
	@echo; echo "== W1 / W2: baseline relay vs real server =="
	$(BENCH_PY) bench/bench_workloads.py $(BENCH_QUICK) $(ARGS)

bench-workers: $(VENV)/.installed
	@echo; echo "== group fan-out, 50 rooms x 4 members: 1 server process vs --workers 2 =="
	$(BENCH_PY) bench/bench_workers.py $(if $(QUICK),--runs 1 --messages 5000 --repeat 2) $(ARGS)

bench-archive: $(VENV)/.installed
	@echo; echo "== archive append: 10 vs 100,000 records in a day file =="
	$(BENCH_PY) bench/bench_archive_append.py $(if $(QUICK),--rounds 2 --appends 50) $(ARGS)

bench-init: $(VENV)/.installed
	@echo; echo "== init: a user in 100 rooms x 3 days x 1,000 messages =="
	$(BENCH_PY) bench/bench_init.py $(BENCH_QUICK) $(ARGS)

bench-login-storm: $(VENV)/.installed
	@echo; echo "== login storm: 1,000 users at once =="
	$(BENCH_PY) bench/bench_login_storm.py $(BENCH_QUICK) $(if $(QUICK),,--runs 2) $(ARGS)

bench-online: $(VENV)/.installed
	@echo; echo "== 10,000 peers online: memory per peer, fan-out in a 1,000-member room =="
	$(BENCH_PY) bench/bench_online.py $(BENCH_QUICK) $(ARGS)

bench-audience: $(VENV)/.installed
	@echo; echo "== audience bump of a login and of an invite among 20,000 rooms =="
	$(BENCH_PY) bench/bench_audience.py $(if $(QUICK),--rooms 2000 --users 200 --runs 10) $(ARGS)

bench-profile: $(VENV)/.installed
	@test -x $(BIN)/py-spy || PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q py-spy
	$(BENCH_PY) bench/profile_server.py $(ARGS)

bench-trace: $(VENV)/.installed
	$(BENCH_PY) bench/profile_server.py --trace $(ARGS)
