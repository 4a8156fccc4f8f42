# Targets of the desktop client; included by the top-level Makefile.
.PHONY: run-client
run-client: $(VENV)/.installed
	@echo "the desktop client is not built yet"; exit 1
