# The two commands a newcomer runs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install stack-up stack-down bench unit integration clean

run: install
	$(BIN)/canary-voice run

test: install
	$(BIN)/lint-imports
	$(BIN)/canary-voice stack up
	$(BIN)/python -m pytest -q -p no:cacheprovider tests
	cd sdk/python && ../../$(BIN)/python -m pytest -q -p no:cacheprovider tests
	cd sdk/node && npm test
	cd console && npm test

unit: install
	$(BIN)/python -m pytest -q tests/unit

integration: install
	$(BIN)/canary-voice stack up
	$(BIN)/python -m pytest -q tests/integration tests/e2e

install: $(STAMP)
	@bash deploy/scripts/install-system-deps.sh

$(STAMP): pyproject.toml sdk/python/pyproject.toml sdk/node/package-lock.json console/package-lock.json
	@bash deploy/scripts/install-system-deps.sh
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' -e sdk/python
	# The Silero VAD's ONNX model, without the torch its Python code needs: we run the
	# model with onnxruntime (services/lib/speech.py), so pip must not pull torch in.
	$(BIN)/pip install -q --no-deps silero-vad==6.2.3
	cd sdk/node && npm ci --no-audit --no-fund && npm run build
	# The web console (served by the API at /console): built here, never committed.
	cd console && npm ci --no-audit --no-fund && npm run build
	@touch $(STAMP)

stack-up: install
	$(BIN)/canary-voice stack up

stack-down:
	$(BIN)/canary-voice stack down

bench: install
	$(BIN)/canary-voice stack up
	$(BIN)/python bench/projector.py

clean:
	rm -rf $(VENV) .local
