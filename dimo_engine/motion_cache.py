"""A folder of motion tokens keyed by the driving input's content hash and the model, so the same
driving video is encoded once however many jobs, cameras and characters reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import torch


def model_id(pipe) -> str:
    """Identity of what motion tokens depend on: the encoders' configs and weights and the model input format."""
    digest = hashlib.sha256()
    config = pipe.config
    digest.update(json.dumps({k: config.get(k) if hasattr(config, "get") else getattr(config, k, None)
                              for k in ("num_frames", "fps", "height", "width")}, sort_keys=True, default=str).encode())
    for name in ("body_encoder", "hand_encoder"):
        encoder = getattr(pipe, name, None)
        if encoder is None:
            continue
        encoder_config = getattr(encoder, "config", None)
        digest.update(json.dumps(dict(encoder_config) if encoder_config is not None else {}, sort_keys=True,
                                 default=str).encode())
        # Two sums per tensor pin the weights down well enough to tell checkpoints apart, cheaply.
        with torch.no_grad():
            for key, tensor in sorted(encoder.state_dict().items()):
                values = tensor.detach().double()
                digest.update(f"{key}:{values.sum().item():.10e}:{values.abs().sum().item():.10e}".encode())
    return digest.hexdigest()[:32]


class MotionCache:
    """`get`/`put` motion tokens under `root`; files are written to a temporary name and renamed."""

    def __init__(self, root: str | os.PathLike, max_entries: int = 256):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def path_for(self, driving_hash: str, model: str) -> Path:
        key = hashlib.sha256(f"{driving_hash}:{model}".encode()).hexdigest()[:40]
        return self.root / f"{key}.safetensors"

    def get(self, driving_hash: str, model: str):
        """The cached motion tokens, or None."""
        from dimo_engine.pipelines import MotionTokens

        path = self.path_for(driving_hash, model)
        with self._lock:
            if not path.is_file():
                self.misses += 1
                return None
            self.hits += 1
            os.utime(path)  # most recently used survives eviction
        return MotionTokens.load(path)

    def put(self, driving_hash: str, model: str, motion) -> Path:
        path = self.path_for(driving_hash, model)
        motion.save(path)  # MotionTokens.save writes a temporary name and renames
        self._evict()
        return path

    def _evict(self) -> None:
        with self._lock:
            entries = sorted((p for p in self.root.glob("*.safetensors") if not p.name.startswith(".")),
                             key=lambda p: p.stat().st_mtime)
            for stale in entries[: max(0, len(entries) - self.max_entries)]:
                stale.unlink(missing_ok=True)
