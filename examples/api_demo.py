"""The Python API on the bundled demo clip: one JSON line per utterance, as
`python3 run_live.py --source demo --no-realtime --jsonl -` prints them."""

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, not installed

from realtime import FinalResult, LiveRecognizer


async def main() -> None:
    async with LiveRecognizer.from_config() as rec:
        async for event in rec.stream("demo", realtime=False):
            if isinstance(event, FinalResult):
                print(json.dumps(event.to_dict(), ensure_ascii=False), flush=True)


asyncio.run(main())
