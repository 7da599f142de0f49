# corral: `make demo` and `make test` work on a fresh Debian 12 machine as root.
# They install the Debian packages they need when missing, make .venv/, install corral there.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := runc conmon busybox-static graphviz
ROOT ?= /var/lib/corral-demo
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration lint bench deps venv clean

deps:
	@missing=""; for p in $(DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

test: deps venv
	$(BIN)/ruff check states engine tests bench
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

unit: venv
	$(BIN)/python -m pytest -q tests/unit

integration: deps venv
	$(BIN)/python -m pytest -q tests/integration

lint: venv
	$(BIN)/ruff check states engine tests bench

demo: deps venv
	@bash configs/demo.sh $(BIN)/corral $(ROOT)

bench: deps venv
	$(BIN)/python bench/start_latency.py

clean:
	rm -rf $(VENV) build *.egg-info
