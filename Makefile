# Two commands: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-quick demo bench proto clean hdfs-deps

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e ".[dev,demo]"
	touch $(STAMP)

test: install
	$(PY) -m pytest -q -ra

test-quick: install
	$(PY) -m pytest -q -ra -m "not slow and not hdfs and not spark and not mpi"

# optional: the HDFS tests fetch these jars (~220 MB, cached) on first use anyway
hdfs-deps: install
	bash scripts/hdfs.sh fetch

demo: install
	bash scripts/demo.sh

bench: install
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

proto: install
	$(PY) -m grpc_tools.protoc -Icos/proto --python_out=cos/proto cos/proto/caffe.proto

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
