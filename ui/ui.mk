# Targets of the desktop client; included by the top-level Makefile (uses its VENV and BIN).
#   make run-client [SERVER=HOST:PORT] [CLIENT_ARGS="--data-dir DIR"]
#   make screenshots       scripted scenario on a virtual display -> docs/screenshots/*.png
#   make ui-deps           only the set-up: the ui extra in .venv and Qt's system libraries
.PHONY: run-client screenshots ui-deps ui-system-deps

SERVER ?= 127.0.0.1:$(PORT)
CLIENT_ARGS ?=
SCREENSHOT_DIR ?= docs/screenshots

# What PyQt5's wheel needs from the system on a fresh Debian (found with ldd on its xcb and
# offscreen platform plugins and the QtQml/QtQuick libraries), a font with Hangul, and Xvfb
# for screenshots. Only the missing ones are installed, and only as root with apt-get.
UI_SYSTEM_PACKAGES := libgl1 libegl1 libopengl0 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3 \
	libgssapi-krb5-2 libx11-6 libx11-xcb1 libxext6 libxrender1 libsm6 libice6 \
	libxkbcommon0 libxkbcommon-x11-0 libxcb1 libxcb-glx0 libxcb-icccm4 libxcb-image0 \
	libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 \
	libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1 \
	fontconfig fonts-noto-cjk fonts-noto-color-emoji fonts-dejavu-core
UI_SCREENSHOT_PACKAGES := xvfb xauth

# $(call apt_ensure,packages): install what dpkg does not list as installed.
define apt_ensure
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends $$missing >/dev/null \
	      || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; \
	  else \
	    echo "missing system packages:$$missing (install them with apt-get as root)" >&2; \
	  fi; \
	fi
endef

$(VENV)/.installed-ui: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[ui]'
	@touch $@

ui-system-deps:
	$(call apt_ensure,$(UI_SYSTEM_PACKAGES))

ui-deps: $(VENV)/.installed-ui ui-system-deps

run-client: ui-deps
	@if [ -z "$$DISPLAY" ] && [ -z "$$WAYLAND_DISPLAY" ] && [ -z "$$QT_QPA_PLATFORM" ]; then \
	  echo "no display: set DISPLAY (or run 'xvfb-run -a make run-client' for a virtual one)" >&2; exit 1; fi
	$(BIN)/python -m ui.main --server $(SERVER) $(CLIENT_ARGS)

screenshots: ui-deps
	$(call apt_ensure,$(UI_SCREENSHOT_PACKAGES))
	xvfb-run -a -s "-screen 0 1400x1000x24" $(BIN)/python -m ui.screenshots --out $(SCREENSHOT_DIR)
