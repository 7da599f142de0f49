# corral: `make demo` and `make test` work on a fresh Debian 12 machine as root.
# They install the Debian packages they need when missing, make .venv/, install corral there.
# DEBS: the package of every program the engine runs (engine/programs.py lists them, and
# tests/integration/test_program_packages.py checks each comes from a package named here).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEBS := runc conmon nftables busybox-static graphviz util-linux
# what the tests run besides: ip (not in a minimal Debian)
TEST_DEBS := iproute2
ROOT ?= /var/lib/corral-demo
STAMP := $(VENV)/.installed

.PHONY: demo test test-v2 unit integration lint bench deps venv clean

deps:
	@missing=""; for p in $(DEBS) $(TEST_DEBS); do \
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
	@# compat: a plain path in a .pth file; the default editable mode installs an import finder
	@# that every Python start in the venv loads (about 10 ms of each corral command)
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

test: deps venv lint
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

# make test-v2: the cgroup v2 part, in a stock Debian 12 VM (qemu, from the committed state):
# the demo, then the tests that touch cgroups (about 9 minutes; CI runs it after make test).
# Not the restart and health tests: they compare sub-second delays, which emulation (a start
# takes seconds there) swamps.
V2_TESTS := tests/unit/test_cgroup_driver.py tests/integration/test_cgroups.py \
	tests/integration/test_container_lifecycle.py tests/integration/test_hardening.py \
	tests/integration/test_faults.py

test-v2:
	bash tools/fresh-debian-vm.sh $(CURDIR) \
	  'make demo && $(BIN)/python -m pytest -q -p no:cacheprovider $(V2_TESTS)' 1800

unit: venv
	$(BIN)/python -m pytest -q tests/unit

integration: deps venv
	$(BIN)/python -m pytest -q tests/integration

# ruff, and the import contracts of setup.cfg ([importlinter]: the layers of docs/ARCHITECTURE.md)
lint: venv
	$(BIN)/ruff check states engine tests bench
	$(BIN)/lint-imports

demo: deps venv
	@bash configs/demo.sh $(BIN)/corral $(ROOT)

# make bench: Docker and Podman side by side; their packages are installed when missing, with
# --no-install-recommends and without starting their services (a policy-rc.d is put in place for
# the install when there is none). BENCH_ARGS=--quick for a fast check.
BENCH_DEBS := docker.io podman netavark iproute2 nftables iptables
BENCH_ARGS ?=

bench: deps venv
	@missing=""; for p in $(BENCH_DEBS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the benchmark:$$missing"; \
	  made=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made=1; \
	  fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  rc=$$?; if [ -n "$$made" ]; then rm -f /usr/sbin/policy-rc.d; fi; [ $$rc -eq 0 ] || exit $$rc; \
	fi
	$(BIN)/python bench/compare.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
