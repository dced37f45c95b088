#!/usr/bin/env bash
# Installs system packages (Debian) and the Python project. `--dev` adds test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
$sudo_cmd apt-get install -y -qq --no-install-recommends \
    mosquitto espeak-ng ffmpeg portaudio19-dev >/dev/null
# The CPU build of torch comes from local disk; install it first so nothing pulls a CUDA build.
python3 -m pip install -q torch==2.13.0
extras="mic"
[ "${1:-}" = "--dev" ] && extras="mic,dev"
python3 -m pip install -q -e ".[${extras}]"
