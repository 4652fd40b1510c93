#!/usr/bin/env bash
# One GPU training run (make gpu-train), run on the lent GPU machine in a copy of this repo with
# var/gpu-kit carried (make gpu-kit builds it). Installs the kit's wheels into /tmp/site, then
# python -m training.gpu_run trains, evaluates and writes the results under $OUT.
# The tiny CPU form: OUT=/tmp/gpu-out PYTHON=/tmp/gpuvenv/bin/python GPU_IMGSZ=64 GPU_TRAIN_HOURS=0.005 ...
# (every GPU_* setting is listed in training/gpu_run.py).
set -uo pipefail
cd "$(dirname "$0")/.."
export GPU_T0=${GPU_T0:-$(date +%s.%N)}
PYTHON=${PYTHON:-python3}
KIT=${GPU_KIT:-var/gpu-kit}
OUT=${OUT:-var/gpu-out}
SITE=${GPU_SITE:-/tmp/site}
mkdir -p "$OUT"
export OUT GPU_KIT=$KIT PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false MPLBACKEND=Agg
[ -f "$KIT/ccp-yolo.tar.xz" ] && ls "$KIT"/wheels/*.whl >/dev/null 2>&1 \
  || { echo "no kit at $KIT: run make gpu-kit here and carry var/gpu-kit" >&2; exit 2; }
t=$(date +%s.%N)
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$KIT"/wheels/*.whl \
  || { echo "installing the kit's wheels failed" >&2; exit 3; }
export GPU_INSTALL_S=$("$PYTHON" -c "import time; print(round(time.time() - $t, 2))")
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}:$PWD"
"$PYTHON" -m training.gpu_run 2>&1 | tee "$OUT/gpu-train.log"
rc=${PIPESTATUS[0]}
echo "[gpu-train] exit $rc; in $OUT:"; ls -l "$OUT"
exit "$rc"
