# make test   - the whole suite on real Postgres, Redis and a moto S3 server (started when not running)
# make demo   - everything embedded on this machine: upload the example photos, print the catalogue
#               (its own .venv-demo with the API and the lean CPU worker only: no PyTorch)
# make train  - import the shared CCP data and train on the CPU (docs/model/training.md)
# make bench  - inference and pipeline speed and mask accuracy, PyTorch vs the worker's backend
# make quality - garments found, right class, extra and second items, mask IoU and edge F on the val photos
# make bench-api - poll/catalogue latency at 200 requests/s and the upload's memory
# make bench-scale - the control plane's ceiling: real API, workers (1-8 processes), PostgreSQL, Redis, S3, an instant stand-in model
# make chaos  - kill -9 a busy pool process, PostgreSQL backends terminated, storage cut off, Redis restarted empty: counted against a fault-free run; then 200 half-open connections and 20 slow uploads, direct and through nginx
# make soak   - 30 minutes (SOAK_MINUTES) of uploads, polls, streams, exports, deletes and retries with a fault every 3 minutes: errors, p99, RSS, lost/doubled, stored files without a row
# make gpu-kit  - var/gpu-kit: Ultralytics' wheels and the shared CCP data, shrunk, for the GPU machine
# make vendor - re-vendor the page's browser libraries from npm (client-zip, Swagger UI for /docs)
# make docs   - the documentation site (MkDocs, docs/) into site/, with --strict: a broken link fails
# make gpu-train - ON the GPU machine (var/gpu-kit carried): train shared-gpu, evaluate, write $OUT (docs/model/training.md: GPU training)
PY      := .venv/bin/python
STAMP   := .venv/.installed-$(shell cat pyproject.toml scripts/install.sh | sha1sum | cut -c1-12)
DEMO_PY := .venv-demo/bin/python
DEMO_STAMP := .venv-demo/.installed-$(shell cat pyproject.toml scripts/install.sh | sha1sum | cut -c1-12)
SHARED  ?= ../shared/datasets/ccp-fashionpedia
DATASET ?= var/datasets/ccp-yolo

.PHONY: venv test test-fast docs demo serve worker migrate train train-continue train-resume bench-train quality evaluate bench bench-640 bench-api bench-scale bench-report clean

venv: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh
	rm -f .venv/.installed-*
	touch $@

# the demo's environment: what it runs and no more (scripts/install.sh demo)
$(DEMO_STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh demo
	rm -f .venv-demo/.installed-*
	touch $@

test: venv
	bash scripts/services.sh
	$(PY) -m pytest

test-fast: venv
	bash scripts/services.sh
	$(PY) -m pytest -m "not e2e"

# the site: docs/ plus the pages docs/hooks.py generates (API reference, benchmarks, model card, sessions)
docs: venv
	$(PY) -m mkdocs build --strict --site-dir site

demo: $(DEMO_STAMP)
	$(DEMO_PY) -m cli.main demo

serve: venv
	$(PY) -m cli.main serve

worker: venv
	$(PY) -m cli.main worker

migrate: venv
	$(PY) -m cli.main migrate

$(DATASET)/data.yaml:
	$(PY) -m cli.main import-fashionpedia --train-json $(SHARED)/instances_train.json \
	  --val-json $(SHARED)/instances_val.json --images $(SHARED)/images --out $(DATASET)

train: venv $(DATASET)/data.yaml
	$(PY) -m cli.main train --data $(DATASET)/data.yaml --preset shared-cpu --project runs/train --name shared-cpu

# continue the shipped weights under CPU bf16 for the preset's wall-clock budget (log: var/train-$(CONTINUE).log);
# CONTINUE picks the preset (training/presets.py); `make train-resume` picks an interrupted run up from its last epoch
CONTINUE ?= cpu-continue
train-continue: venv $(DATASET)/data.yaml
	$(PY) -m cli.main train --data $(DATASET)/data.yaml --preset $(CONTINUE) --weights models/wardrobe-yolov8s-seg.pt \
	  --project runs/train --name $(CONTINUE) 2>&1 | tee var/train-$(CONTINUE).log

train-resume: venv
	$(PY) -m cli.main train --data $(DATASET)/data.yaml --resume --project runs/train --name $(CONTINUE)

# one CPU training epoch from the shipped weights, fp32 against bf16: seconds per step and val mAP
bench-train: venv $(DATASET)/data.yaml
	$(PY) -m bench.train_step --data $(DATASET)/data.yaml

evaluate: venv $(DATASET)/data.yaml
	$(PY) -m cli.main evaluate --data $(DATASET)/data.yaml --json var/eval.json

bench: venv
	$(PY) -m bench.pipeline

# the same benchmark at imgsz 640 (the plain OpenVINO export: no int8 model is shipped at 640),
# without the 900-photo upload: how the ratios move with the model's cost
bench-640: venv
	WARDROBE_IMGSZ=640 $(PY) -m bench.pipeline --large 0 --out bench/out/pipeline-640.json

# the catalogue as a user sees it: the val photos through the real API and worker, scored against their labels
quality: venv
	$(PY) -m bench.quality

bench-api: venv
	$(PY) -m bench.api

# everything but the model, for real (bench/scale.py); writes bench/out/scale.json (make bench-report commits it)
bench-scale: venv
	$(PY) -m bench.scale

# bench/out/*.json -> docs/benchmarks/ as dated records; the docs build renders the newest of each kind
bench-report: venv
	$(PY) -m bench.report

# the faults of issue 17 in one run (bench/chaos.py; real processes, the fake model); writes bench/out/chaos.json
.PHONY: chaos
chaos: venv
	bash scripts/services.sh
	$(PY) -m bench.chaos

# a long mixed load with a fault every few minutes (bench/soak.py; real processes, the stand-in model); writes bench/out/soak.json
SOAK_MINUTES ?= 30
.PHONY: soak
soak: venv
	bash scripts/services.sh
	$(PY) -m bench.soak --minutes $(SOAK_MINUTES)

.PHONY: gpu-kit gpu-train

gpu-kit: venv
	$(PY) -m training.gpu_kit build --shared $(SHARED)

# no venv here: the GPU machine's own python3 (PYTHON=... to override), wheels from the kit
gpu-train:
	bash scripts/gpu_train.sh

# the page's browser libraries (client-zip, Swagger UI) from npm into api/static/vendor, licences kept
.PHONY: vendor
vendor:
	bash scripts/vendor.sh

clean:
	rm -rf var runs site .pytest_cache
