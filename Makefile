# Two entry points for a fresh machine (README): `make serve` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
WEIGHTS := models/weights/digits_prelu.safetensors

LOCK   := requirements.lock
EXTRAS := export serve trt bench dev ray

.PHONY: serve test reinstall lock weights bundled samples accuracy-study clean

# Every package at the version and sha256 that requirements.lock names (pip's hash-checking mode: a
# download that differs is refused, and so is a package the lock does not name); torch is the CPU build
# on this machine's disk (2.13.0+cpu). Then this package itself, built by the locked setuptools, as a strict
# editable install: a tree of links laid out as the wheel is (build/__editable__.*), so lint-imports, an IDE
# and any static tool read `prelu_deploy` from the checkout; a new module needs `make reinstall`.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(MAKE) reinstall
	touch $@

reinstall:
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict

# requirements.lock anew from pyproject.toml's extras (pip-tools, in a venv of its own): the versions
# pinned there are kept unless `make lock UPGRADE='-P NAME'` (one package) or UPGRADE=--upgrade (all).
lock:
	$(PYTHON) -m venv .lock-venv && .lock-venv/bin/python -m pip install -q pip-tools
	CUSTOM_COMPILE_COMMAND='make lock' .lock-venv/bin/pip-compile -q pyproject.toml $(EXTRAS:%=--extra=%) --generate-hashes \
		--allow-unsafe --no-emit-index-url --no-emit-find-links --annotation-style=line -o $(LOCK) $(UPGRADE)
	rm -rf .lock-venv

# The main job: serve the bundled trained digits model on ONNX Runtime (CPU) at 127.0.0.1:8000.
serve: $(STAMP)
	$(BIN)/prelu-deploy serve

# PYTHONDONTWRITEBYTECODE emptied: where the environment sets it (this machine does), pytest re-rewrites the asserts
# of every plugin module in each worker (7 s of CPU apiece) and each server process compiles this package anew.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n 2 --durations=15

# How the bundled weights were made (about 45 s on 2 cores): the digits, brought to 8×8 by the ink-box steps the
# server applies to uploads, plus 4 warped copies of each and 4,000 font-drawn digits; then models/bundled/ anew.
weights: $(STAMP)
	$(BIN)/prelu-deploy train --arch digits_prelu --dataset digits --epochs 16 --seed 0 --fit ink_box --warp-copies 4 --glyphs 4000 --out $(WEIGHTS) --force
	$(BIN)/python docs/make_bundled.py

# models/bundled/: the bundled model as a ready repository inside the package (rerun after `make weights`).
bundled: $(STAMP)
	$(BIN)/python docs/make_bundled.py

# models/samples/: one real held-out digit per class, the images the README's examples send.
samples: $(STAMP)
	$(BIN)/python docs/make_samples.py

# docs/accuracy.md: ReLU vs channel-shared vs channel-wise PReLU on the digits, same recipe, 3 seeds.
accuracy-study: $(STAMP)
	$(BIN)/python docs/accuracy_study.py > docs/accuracy.md

clean:
	rm -rf $(VENV) .lock-venv *.egg-info .pytest_cache
