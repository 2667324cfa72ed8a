# Everything installs into .venv inside the checkout. torch comes from pip (not uv).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install install-test chromium demo demo-quick test test-fast bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[web]'

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'

demo: install
	$(BIN)/landscape demo --out demo

demo-quick: install
	$(BIN)/landscape demo --quick --out demo-quick

# The browser tests open the report and the 3-D scene in headless Chromium (Debian's package):
# installed here when missing and run as root; otherwise those tests are skipped (not in CI).
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" -eq 0 ] && \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "chromium is not installed: the browser tests will be skipped"

test: install-test chromium
	$(BIN)/python -m pytest -q

test-fast: install-test
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache
