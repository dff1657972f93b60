"""The fixed train/test split of procedural motions: families held out of training entirely (the benchmark's
unseen motions) and disjoint seed ranges, so no test motion is a train motion."""

from __future__ import annotations

import numpy as np

from dimo_engine.body.motions import MOTION_FAMILIES
from dimo_engine.errors import InputError

__all__ = ["HELD_OUT_FAMILIES", "SEED_RANGES", "TRAIN_FAMILIES", "motion_split"]

# Held out entirely from training, for the benchmark's unseen-motion test.
HELD_OUT_FAMILIES = ("dance_twist", "jumping_jacks", "pinch")
TRAIN_FAMILIES = tuple(f for f in MOTION_FAMILIES if f not in HELD_OUT_FAMILIES)
# Seeds: training motions draw from [0, 1e6), test motions from [1e6, 2e6).
SEED_RANGES = {"train": (0, 1_000_000), "test": (1_000_000, 2_000_000)}


def motion_split(split: str, count: int, seed: int = 0) -> list[tuple[str, int]]:
    """`count` (family, motion seed) pairs of `split` ('train' or 'test'), fixed by `seed`.

    Train cycles through TRAIN_FAMILIES with seeds in the train range; test cycles through all
    families (held-out ones included) with seeds in the test range, so no test motion is a train motion.
    """
    if split not in SEED_RANGES:
        raise InputError(f"split '{split}' is unknown; use 'train' or 'test'")
    families = TRAIN_FAMILIES if split == "train" else MOTION_FAMILIES
    low, high = SEED_RANGES[split]
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, list(SEED_RANGES).index(split), 11])
    order = rng.permutation(len(families))
    seeds = rng.choice(high - low, size=int(count), replace=False) + low if count <= 100_000 else rng.integers(low, high, int(count))
    return [(families[order[i % len(families)]], int(seeds[i])) for i in range(int(count))]
