# Benchmark targets; included by the top-level Makefile.
.PHONY: bench
bench: $(VENV)/.installed
	$(BIN)/python bench/bench_archive_append.py
