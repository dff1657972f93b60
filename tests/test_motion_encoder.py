"""Motion encoders: token shapes, temporal mixing, hand crops that follow boxes, and pose-head targets."""

import math

import pytest
import roma
import torch

from dimo_engine.errors import InputError
from dimo_engine.models import MotionEncoder
from dimo_engine.models.motion_encoder import (
    body_pose_targets, crop_hands, hand_pose_targets, rotmat_from_6d,
)


def _body_encoder():
    torch.manual_seed(0)
    return MotionEncoder(image_size=32, patch_size=8, num_crops=1, num_motion_tokens=3, dim=32, motion_dim=16,
                         num_layers=1, num_heads=2, aux_joints=22)


def test_body_tokens_shape_and_pose_head():
    encoder = _body_encoder()
    tokens = encoder(torch.rand(2, 5, 3, 48, 40))  # any frame size: resized to image_size
    assert tokens.shape == (2, 5, 3, 16)
    assert encoder.predict_pose(tokens).shape == (2, 5, 1, 22, 6)


def test_tokens_depend_on_the_frame_content():
    encoder = _body_encoder().eval()
    frames = torch.rand(1, 3, 3, 32, 32)
    changed = frames.clone()
    changed[:, 1] = 1 - changed[:, 1]
    with torch.no_grad():
        a, b = encoder(frames), encoder(changed)
    assert (a[:, 1] - b[:, 1]).abs().max() > 1e-4


def test_hand_encoder_two_crops_and_save_load(tmp_path):
    torch.manual_seed(0)
    encoder = MotionEncoder(image_size=16, patch_size=8, num_crops=2, num_motion_tokens=2, dim=16, motion_dim=16,
                            num_layers=1, num_heads=2, aux_joints=15).eval()
    frames = torch.rand(1, 5, 3, 64, 64)
    boxes = torch.tensor([[10.0, 10.0, 26.0, 30.0], [40.0, 30.0, 60.0, 50.0]]).expand(1, 5, 2, 4)
    crops = crop_hands(frames, boxes, 16)
    assert crops.shape == (1, 5, 2, 3, 16, 16)
    with torch.no_grad():
        tokens = encoder(crops)
    assert tokens.shape == (1, 5, 4, 16)
    assert encoder.predict_pose(tokens).shape == (1, 5, 2, 15, 6)
    encoder.save_pretrained(tmp_path / "hands")
    reloaded = MotionEncoder.from_pretrained(tmp_path / "hands").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(crops), tokens)
    with pytest.raises(InputError, match="shape"):
        encoder(torch.rand(1, 5, 3, 16, 16))


def test_crop_follows_the_box():
    frames = torch.zeros(1, 1, 3, 64, 64)
    frames[..., 20:30, 40:50] = 1.0  # a white square where the right hand is
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [40.0, 20.0, 50.0, 30.0]]])[None]
    crops = crop_hands(frames, boxes, 8)
    assert crops[0, 0, 1].mean() > 0.9
    assert crops[0, 0, 0].mean() < 0.1


def test_body_root_target_ignores_heading():
    # Canonical character-frame root (SMPL Y-up/+Z-forward -> Z-up/-Y-forward), then turned about Z.
    canonical = roma.rotvec_to_rotmat(torch.tensor([math.pi / 2, 0.0, 0.0]))
    turned = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 1.1])) @ canonical
    body = torch.randn(21, 3) * 0.3
    a = body_pose_targets(roma.rotmat_to_rotvec(canonical), body)
    b = body_pose_targets(roma.rotmat_to_rotvec(turned), body)
    assert a.shape == (22, 6)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(rotmat_from_6d(a[1:]), roma.rotvec_to_rotmat(body), atol=1e-5, rtol=0)
    tilted = roma.rotvec_to_rotmat(torch.tensor([0.4, 0.0, 0.0])) @ canonical
    assert (body_pose_targets(roma.rotmat_to_rotvec(tilted), body)[0] - a[0]).abs().max() > 0.1
    assert hand_pose_targets(torch.zeros(4, 15, 3), torch.zeros(4, 15, 3)).shape == (4, 2, 15, 6)
