#!/usr/bin/env bash
# Install whatever is missing for pvr, quickly when nothing is:
#   1. Debian packages for headless OpenGL rendering (EGL/Mesa),
#   2. a virtual env at .venv with the pinned dependencies (requirements.lock),
#   3. packages installed without their own dependency pins (NO_DEPS below).
# Sourced or run by bin/pvr and bin/test; safe to run again at any time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { echo "[pvr setup] $*" >&2; }

APT_PACKAGES=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri darknet)  # darknet: sample photos + ImageNet labels for tests
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PVR_PYTHON:-$(command -v python3.11 || command -v python3)}"
STAMP=".venv/.pvr-installed"
# metaworld 3.1.1 pins mujoco==3.3.0, pvr needs 3.17 (pvr.envs.metaworld patches the one
# incompatibility); its other dependencies are in requirements.lock already.
NO_DEPS=(metaworld==3.1.1)
want="$( (cat pyproject.toml requirements.lock; printf '%s\n' "${NO_DEPS[@]}") | sha256sum | cut -d' ' -f1)"
if [ -x .venv/bin/python ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  log "creating virtual env .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
log "installing pinned dependencies into .venv (first time: ~2-3 min, ~6 GB)"
.venv/bin/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[test,runtime]' 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "${NO_DEPS[@]}"
.venv/bin/python -c "import pvr, torch, minigrid, efficientnet_lite_pytorch, metaworld" \
  || { log "install failed: see the pip output above"; exit 1; }
echo "$want" > "$STAMP"
log "ready"
