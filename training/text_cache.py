"""On-disk cache of the frozen text layers' token states, keyed by encoder and input tokens.

A second run with the same encoder, split and inputs reads them back instead of re-encoding.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from engines import text_encoder
from engines.text_encoder import SplitTextEncoder

log = logging.getLogger(__name__)


def _key(sequence: list[int]) -> str:
    return hashlib.sha1(torch.tensor(sequence, dtype=torch.int32).numpy().tobytes()).hexdigest()


class TokenStateCache:
    def __init__(self, encoder_id: str, split_at: int, root: Path | None = None) -> None:
        safe_id = hashlib.sha1(encoder_id.encode()).hexdigest()[:12]
        self.folder = (root or text_encoder.CACHE_ROOT / "text-states") / f"{safe_id}-split{split_at}"
        self._states: dict[str, torch.Tensor] = {}
        self._loaded_shards: set[str] = set()

    def _load_shards(self) -> None:
        if not self.folder.is_dir():
            return
        for shard in sorted(self.folder.glob("*.safetensors")):
            if shard.name not in self._loaded_shards:
                self._states.update(load_file(str(shard)))
                self._loaded_shards.add(shard.name)

    def states(
        self, encoder: SplitTextEncoder, sequences: list[list[int]], batch_size: int = 32
    ) -> list[torch.Tensor]:
        """Token states (S_i, H) float16 for every sequence, encoding only the ones not cached."""
        self._load_shards()
        keys = [_key(s) for s in sequences]
        missing = sorted(
            {k: s for k, s in zip(keys, sequences) if k not in self._states}.items(),
            key=lambda kv: len(kv[1]),
        )
        if missing:
            started = time.monotonic()
            new: dict[str, torch.Tensor] = {}
            for begin in tqdm(range(0, len(missing), batch_size), desc="encoding text", unit="batch"):
                chunk = missing[begin : begin + batch_size]
                longest = max(len(s) for _, s in chunk)
                ids = torch.zeros(len(chunk), longest, dtype=torch.long)
                attention = torch.zeros(len(chunk), longest, dtype=torch.long)
                for row, (_, seq) in enumerate(chunk):
                    ids[row, : len(seq)] = torch.tensor(seq)
                    attention[row, : len(seq)] = 1
                hidden = encoder.bottom(ids, attention).to(torch.float16)
                for row, (key, seq) in enumerate(chunk):
                    new[key] = hidden[row, : len(seq)].clone()
            self.folder.mkdir(parents=True, exist_ok=True)
            shard = f"{int(time.time() * 1000)}-{len(new)}.safetensors"
            save_file(new, str(self.folder / shard))
            self._loaded_shards.add(shard)
            self._states.update(new)
            log.info(
                "encoded %d new inputs in %.1f s (cache %s)",
                len(new),
                time.monotonic() - started,
                self.folder,
            )
        return [self._states[k] for k in keys]
