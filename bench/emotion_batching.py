"""The recognizer on the utterances of k streams one by one against one `Recognizer.add_many` call.

    python bench/emotion_batching.py [--sizes 1 2 4 8] [--repeats 5] [--backend auto]

k sessions, each holding a causal context of `--context` utterances, receive one new utterance each,
as k lockstep streams do: `session.add` one after another against `add_many` (one padded text-encoder
call, fusion per session). Prints the best wall time of each over `--repeats` and the largest score
difference between the two. Text only (no audio or frames). Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.runtime import env as runtime_env

runtime_env.apply()

from engines.stream import UtteranceInput, load_recognizer

LINES = [
    "I can't believe you did that without asking me first.",
    "Oh really? Well that's just great.",
    "We won! We actually won the whole thing!",
    "Okay.",
    "I don't know what you want me to say, honestly, I tried everything I could think of.",
    "Please don't leave, not now.",
    "Wait, what is that noise?",
    "Fine, whatever, do what you want.",
    "That is the nicest thing anyone has ever said to me.",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--context", type=int, default=6, help="utterances already in each session")
    parser.add_argument("--backend", default="auto", help="torch | onnx | auto")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    recognizer = load_recognizer(backend=args.backend)
    print(
        f"backend {recognizer.engines.backend}; {args.context} utterances of context; best of {args.repeats}"
    )
    print(f"{'k':>3}{'one by one ms':>15}{'add_many ms':>13}{'max score diff':>16}")
    for k in args.sizes:
        sessions = [recognizer.new_session(12) for _ in range(k)]
        for s, session in enumerate(sessions):
            for i in range(args.context):
                session.add(UtteranceInput(LINES[(s + i) % len(LINES)], f"S{1 + i % 2}"))
        saved = [list(session.context) for session in sessions]
        new = [UtteranceInput(LINES[(s + 3 * k) % len(LINES)], "S1") for s in range(k)]

        def restore(sessions=sessions, saved=saved) -> None:
            for session, context in zip(sessions, saved):
                session.context.clear()
                session.context.extend(context)

        best_single, best_many = float("inf"), float("inf")
        for _ in range(args.repeats):
            restore()
            started = time.perf_counter()
            singles = [session.add(u) for session, u in zip(sessions, new)]
            best_single = min(best_single, time.perf_counter() - started)
            restore()
            started = time.perf_counter()
            many = recognizer.add_many(list(zip(sessions, new)))
            best_many = min(best_many, time.perf_counter() - started)
        diff = max(abs(a.scores[x] - b.scores[x]) for a, b in zip(singles, many) for x in a.scores)
        print(f"{k:>3}{best_single * 1000:>15.1f}{best_many * 1000:>13.1f}{diff:>16.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
