#!/usr/bin/env bash
# Install the project into a virtual environment.
#   bash scripts/install.sh         .venv with every extra: API, lean and GPU worker, training, OpenVINO, tests
#   bash scripts/install.sh demo    .venv-demo with what `make demo` runs: the API and the lean CPU worker
#                                   (OpenVINO runs the shipped int8 model: no PyTorch, no Ultralytics)
# VENV=path puts the environment elsewhere; PYTHON=python3.x picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:-full}
case "$MODE" in
  full) VENV=${VENV:-.venv}; STEPS=4 ;;
  demo) VENV=${VENV:-.venv-demo}; STEPS=2 ;;
  *) echo "usage: $0 [full|demo]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# the first install takes minutes (PyTorch alone is a large download): say what is happening
step() { echo "[install $1/$STEPS] $2 ($(date +%H:%M:%S))" >&2; }
step 1 "pip in $VENV"
$PIP install -q --upgrade pip
if [ "$MODE" = demo ]; then
  step 2 "the project for the demo: the API and the lean CPU worker (OpenVINO, OpenCV, Flask, Celery)"
  $PIP install -e '.[api,worker]' | grep -E '^(Collecting|Successfully)' || true
  "$VENV/bin/python" -c "import cli.main, flask, celery, openvino, cv2" || { echo "error: the project did not install" >&2; exit 1; }
  echo "[install] done ($(date +%H:%M:%S))" >&2
  exit 0
fi
# torchvision from PyPI does not import beside the small CPU torch wheel; these two pair up.
step 2 "PyTorch and torchvision: the largest download, usually the longest step"
case "$(uname -m)" in
  aarch64) $PIP install --progress-bar on torch==2.9.1 torchvision==0.24.1 | grep -E '^(Collecting|Downloading|Successfully)' || true ;;
  *)       $PIP install --progress-bar on torch==2.14.1 torchvision==0.29.1 | grep -E '^(Collecting|Downloading|Successfully)' || true ;;
esac
"$VENV/bin/python" -c "import torch, torchvision" || { echo "error: torch did not install" >&2; exit 1; }
step 3 "the project and its extras (Ultralytics, OpenVINO, Flask, Celery, test tools)"
$PIP install -e '.[api,worker,gpu,training,openvino,dev]' | grep -E '^(Collecting|Successfully)' || true
"$VENV/bin/python" -c "import cli.main, flask, celery, ultralytics" || { echo "error: the project did not install" >&2; exit 1; }
step 4 "Chromium and nginx for the browser and proxy tests (only where missing)"
# Debian's Chromium for the browser test (Playwright's own browser download does not work here), and
# Debian's nginx for the tests of the deployed proxy site (tests/test_slow_clients.py runs its own)
apt_for_tests() {  # $1: the package, $2: a file it installs, $3: the tests skipped without it
  if [ ! -x "$2" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get install -y -qq "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$1" >/dev/null; }) \
      || echo "warning: could not install $1; $3 will be skipped" >&2
  fi
}
apt_for_tests chromium /usr/bin/chromium "the browser test"
if [ ! -x /usr/sbin/nginx ]; then
  apt_for_tests nginx-light /usr/sbin/nginx "the nginx tests"
  # where systemd runs, the package starts a system nginx on port 80: the tests start their own
  if [ -x /usr/sbin/nginx ] && command -v systemctl >/dev/null; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
fi
echo "[install] done ($(date +%H:%M:%S))" >&2
