#!/usr/bin/env bash
# Create .venv and install the project with every extra (API, worker, training, OpenVINO, tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torchvision from PyPI does not import beside the small CPU torch wheel; these two pair up.
case "$(uname -m)" in
  aarch64) $PIP install -q torch==2.9.1 torchvision==0.24.1 ;;
  *)       $PIP install -q torch==2.14.1 torchvision==0.29.1 ;;
esac
$PIP install -q -e '.[api,worker,training,openvino,dev]'
# Debian's Chromium for the browser test (Playwright's own browser download does not work here).
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }) \
    || echo "warning: could not install chromium; the browser test will be skipped" >&2
fi
