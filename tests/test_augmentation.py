"""Driving-frame augmentation: moves pixels, keeps the size, is deterministic, and hand boxes follow the warp."""

import pytest
import torch

from dimo_engine.augmentation import DrivingAugmentation
from dimo_engine.errors import InputError


def _clip():
    frames = torch.full((4, 3, 64, 64), 0.2)
    frames[:, :, 20:30, 40:50] = 1.0  # a bright "hand" square
    boxes = torch.tensor([[4.0, 4.0, 14.0, 14.0], [40.0, 20.0, 50.0, 30.0]]).expand(4, 2, 4)
    return frames, boxes


def test_moves_pixels_keeps_size_and_is_deterministic():
    augment = DrivingAugmentation()
    frames, boxes = _clip()
    out, out_boxes = augment(frames, boxes, seed=5)
    assert out.shape == frames.shape and out_boxes.shape == boxes.shape
    assert (out - frames).abs().mean() > 0.01
    again, again_boxes = augment(frames, boxes, seed=5)
    assert torch.equal(out, again) and torch.equal(out_boxes, again_boxes)
    other, _ = augment(frames, boxes, seed=6)
    assert not torch.equal(out, other)
    # One camera per clip: every frame of the clip gets the same warp.
    torch.testing.assert_close(out[0], out[3])


def test_hand_box_follows_the_warp():
    augment = DrivingAugmentation(brightness=0, contrast=0, saturation=0, hue=0, blur_p=0)
    frames, boxes = _clip()
    for seed in range(3):
        out, out_boxes = augment(frames, boxes, seed=seed)
        ys, xs = torch.nonzero(out[0, 0] > 0.6, as_tuple=True)
        x0, y0, x1, y1 = out_boxes[0, 1].tolist()
        assert x0 - 1 <= xs.min() and xs.max() <= x1 + 1 and y0 - 1 <= ys.min() and ys.max() <= y1 + 1
        assert out_boxes[0, 1].tolist() != boxes[0, 1].tolist()


def test_batches_use_one_seed_per_clip_and_reject_bad_shapes():
    augment = DrivingAugmentation()
    frames, boxes = _clip()
    batch, batch_boxes = augment(torch.stack([frames, frames]), torch.stack([boxes, boxes]), seed=10)
    single, _ = augment(frames, boxes, seed=11)
    torch.testing.assert_close(batch[1], single)
    assert not torch.equal(batch[0], batch[1])
    with pytest.raises(InputError, match="shape"):
        augment(torch.rand(4, 64, 64))
