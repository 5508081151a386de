# deepx_opt — set-up, demo, tests, benchmarks.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install opencl demo test test-fast bench clean

install: $(STAMP) opencl

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's PoCL gives a working OpenCL CPU device; installed only when run as root and no platform
# can build a kernel (the wheel's bundled PoCL cannot on AVX-512 CPUs: see docs/opencl.md).
opencl: $(STAMP)
	@if $(BIN)/python -m deepx_opt.runtime.opencl_probe >/dev/null 2>&1; then \
		echo "OpenCL: a working platform is present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "OpenCL: installing Debian's pocl-opencl-icd"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pocl-opencl-icd ocl-icd-libopencl1 >/dev/null; \
		$(BIN)/python -m deepx_opt.runtime.opencl_probe; \
	else \
		echo "OpenCL: no working platform and not root; install pocl-opencl-icd (or a vendor ICD) to use OpenCL"; \
	fi

demo: install
	$(BIN)/deepx demo -o demo-out

test: install
	$(BIN)/python -m pytest -q -n 2 tests

test-fast: install
	$(BIN)/python -m pytest -q -x -n 2 tests -m "not slow"

bench: install
	mkdir -p bench-out
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b --out bench-out || exit 1; done

clean:
	rm -rf $(VENV) demo-out bench-out .pytest_cache *.egg-info
