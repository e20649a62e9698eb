# Two commands on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP := $(VENV)/.cospeech-setup

.PHONY: setup test demo lint clean

setup: $(STAMP)

# A torch the user already has (for example a CUDA build) is kept: the venv then sees
# the system site-packages. Otherwise the pinned CPU/CUDA wheel is installed explicitly
# and before anything else, so no dependency range can pull a different build.
$(STAMP): pyproject.toml scripts/setup-system.sh
	@if [ ! -x $(BIN)/python ]; then \
	  if $(PY) -c "import torch" 2>/dev/null; then $(PY) -m venv --system-site-packages $(VENV); \
	  else $(PY) -m venv $(VENV); fi; fi
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e ".[dev]"
	bash scripts/setup-system.sh
	@touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/cospeech generate --audio examples/speech.wav --image examples/reference.png \
	  --reference-pose examples/reference_pose.npz -o out/demo.mp4 \
	  --contact-sheet out/demo-sheet.png

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache
