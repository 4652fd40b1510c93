#!/usr/bin/env bash
# Create .venv and install the project with every extra (API, worker, training, OpenVINO, tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
# the first install takes minutes (PyTorch alone is a large download): say what is happening
step() { echo "[install $1/4] $2 ($(date +%H:%M:%S))" >&2; }
step 1 "pip in .venv"
$PIP install -q --upgrade pip
# torchvision from PyPI does not import beside the small CPU torch wheel; these two pair up.
step 2 "PyTorch and torchvision: the largest download, usually the longest step"
case "$(uname -m)" in
  aarch64) $PIP install --progress-bar on torch==2.9.1 torchvision==0.24.1 | grep -E '^(Collecting|Downloading|Successfully)' || true ;;
  *)       $PIP install --progress-bar on torch==2.14.1 torchvision==0.29.1 | grep -E '^(Collecting|Downloading|Successfully)' || true ;;
esac
.venv/bin/python -c "import torch, torchvision" || { echo "error: torch did not install" >&2; exit 1; }
step 3 "the project and its extras (Ultralytics, OpenVINO, Flask, Celery, test tools)"
$PIP install -e '.[api,worker,training,openvino,dev]' | grep -E '^(Collecting|Successfully)' || true
.venv/bin/python -c "import cli.main, flask, celery, ultralytics" || { echo "error: the project did not install" >&2; exit 1; }
step 4 "Chromium for the browser test (only where missing)"
# Debian's Chromium for the browser test (Playwright's own browser download does not work here).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
echo "[install] done ($(date +%H:%M:%S))" >&2
