"""Screenshot of the overlay page showing the demo conversation (README's docs/overlay.png).

Runs `run_live.py --source demo --no-realtime` against an embedded broker, follows it with the overlay,
and photographs the page with Debian's headless Chromium:
`python scripts/overlay_screenshot.py [--out docs/overlay.png] [--query "transparent=1"]`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's realtime/, not another installed copy

from realtime.consumers.overlay import Overlay, OverlayOptions
from realtime.outputs.mqtt.broker import EmbeddedBroker


async def make(out: Path, query: str, size: str) -> None:
    broker = EmbeddedBroker()
    url = await broker.start()
    try:
        async with Overlay(OverlayOptions(port=0)) as overlay:
            await overlay.connect(url)
            run = await asyncio.create_subprocess_exec(
                sys.executable, str(REPO / "run_live.py"), "--source", "demo", "--no-realtime", "--mqtt", url,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            if await run.wait() != 0:
                raise SystemExit("error: run_live.py --source demo failed")
            await asyncio.sleep(1.0)  # the last results are acknowledged; let the overlay read them
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            if chromium is None:
                raise SystemExit("error: chromium is not installed (apt-get install chromium)")
            command = [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={size}", f"--screenshot={out}", f"{overlay.url}?{query}",
            ]  # fmt: skip
            await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True, timeout=120)
    finally:
        await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "overlay.png"))
    parser.add_argument("--query", default="minutes=1", help="page query, e.g. transparent=1&lines=8")
    parser.add_argument("--size", default="760,330", help="window WIDTH,HEIGHT")
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(make(out.resolve(), args.query, args.size))
    print(out)


if __name__ == "__main__":
    main()
