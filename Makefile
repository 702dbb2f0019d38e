# dataplane.postgresql: developer entry points. See README.md.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export LC_ALL := C.UTF-8
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: venv test demo units integration ha molecule lint sanity galaxy clone benchmarks clean

venv:
	@bash scripts/setup_venv.sh

test: venv
	@bash scripts/run_tests.sh all

units: venv
	@bash scripts/run_tests.sh units

integration: venv
	@bash scripts/run_tests.sh integration

# A real Patroni cluster with etcd: the fence across a crash of the leader (tests/ha).
ha: venv
	@bash scripts/run_tests.sh ha

molecule: venv
	@bash scripts/run_tests.sh molecule

lint: venv
	@bash scripts/run_tests.sh lint

sanity: venv
	@bash scripts/run_tests.sh sanity

# Build the collection tarball and check it with galaxy-importer, offline (scripts/galaxy_check.py).
galaxy: venv
	@bash scripts/run_tests.sh galaxy

# Clone this repository (committed work) into a mode-700 folder and run `make demo` there.
clone: venv
	@bash scripts/run_tests.sh clone

demo: venv
	@$(PY) scripts/demo.py

clean:
	rm -rf $(VENV) .cache tests/output .pytest_cache
