"""The person box has one recipe: the renderer's per-frame annotation and the engine's clip crop agree."""

from __future__ import annotations

import numpy as np

from blender_addon.core.annotations import PERSON_ALPHA_THRESHOLD, person_box
from dimo_engine.person_crop import person_box_from_alpha


def _clip() -> np.ndarray:
    alpha = np.zeros((3, 40, 60), dtype=np.uint8)
    alpha[0, 10:30, 5:15] = 255
    alpha[1, 12:32, 20:28] = 255
    alpha[1, 11, 20] = PERSON_ALPHA_THRESHOLD + 1  # a soft edge still counts as the person
    alpha[2, 5, 50] = PERSON_ALPHA_THRESHOLD  # at the threshold it does not
    return alpha


def test_the_clip_box_is_the_union_of_the_per_frame_annotation_boxes():
    alpha = _clip()
    frames = np.stack([person_box(a) for a in alpha[:2]])
    assert frames.tolist() == [[5, 10, 15, 30], [20, 11, 28, 32]]
    union = (*frames[:, :2].min(0), *frames[:, 2:].max(0))
    assert person_box_from_alpha(alpha) == tuple(float(v) for v in union)
    assert person_box(alpha[2]).tolist() == [0, 0, 0, 0]  # empty: below the threshold everywhere


def test_no_person_anywhere_gives_no_box():
    assert person_box_from_alpha(np.zeros((2, 8, 8), dtype=np.uint8)) is None
