"""The training objective's pure functions, each tested alone."""

import math

import pytest
import roma
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from training.losses import (
    annealed_weight,
    flow_matching_loss,
    geometric_pose_loss,
    motion_keep_mask,
    noisy_latents,
    person_cell_weights,
    sample_flow_sigmas,
)


def _six_d(rotmat):
    return rotmat[..., :, :2].transpose(-1, -2).flatten(-2)  # columns stacked


@pytest.mark.parametrize("shape", ["constant", "linear", "cosine"])
def test_annealed_weight_is_exactly_zero_from_end_step(shape):
    weights = [annealed_weight(step, 2.0, hold_steps=10, end_step=50, shape=shape) for step in range(80)]
    assert weights[:10] == [2.0] * 10
    assert all(w == 0.0 for w in weights[50:])
    assert all(w > 0.0 for w in weights[:50])
    assert all(a >= b for a, b in zip(weights, weights[1:]))  # never rises
    if shape == "linear":
        assert weights[30] == pytest.approx(1.0)
    if shape == "cosine":
        assert weights[30] == pytest.approx(1.0)
        assert weights[20] == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi * 0.25)))


def test_annealed_weight_rejects_unknown_shape():
    with pytest.raises(ValueError, match="'step'"):
        annealed_weight(0, 1.0, 0, 10, shape="step")


def test_flow_matching_loss_is_zero_for_the_true_velocity_and_positive_otherwise():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 2, 5, 5, generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    sigmas = torch.tensor([0.1, 0.5, 0.9])
    x_t = noisy_latents(x0, noise, sigmas)
    assert torch.allclose(x_t[1], 0.5 * x0[1] + 0.5 * noise[1])
    # the velocity carries x_t back to x0 in sigma time
    assert torch.allclose(x_t - sigmas.view(-1, 1, 1, 1, 1) * (noise - x0), x0, atol=1e-6)
    assert flow_matching_loss(noise - x0, x0, noise, sigmas).item() == pytest.approx(0.0, abs=1e-12)
    wrong = flow_matching_loss(torch.zeros_like(x0), x0, noise, sigmas, weighting_scheme="cosmap")
    assert wrong.item() > 0.1


def test_person_cell_weights_follow_the_mask_through_the_vae_grid():
    masks = torch.zeros(1, 9, 16, 16)  # 9 frames -> latent frames {0}, {1..4}, {5..8}; 16 px -> 4 x 4 cells
    masks[0, 0, 0:4, 0:4] = 1.0  # frame 0: the top-left cell, fully
    masks[0, 6, 12:16, 8:10] = 1.0  # one frame of the third latent frame: half of a bottom cell
    weights = person_cell_weights(masks, (1, 16, 3, 4, 4), extra_weight=10.0)
    assert weights.shape == (1, 1, 3, 4, 4)
    assert weights[0, 0, 0, 0, 0] == pytest.approx(11.0) and weights[0, 0, 2, 3, 2] == pytest.approx(6.0)
    assert (weights == 1.0).sum() == 3 * 16 - 2  # every other cell keeps weight 1
    with pytest.raises(ValueError, match="latent frames"):
        person_cell_weights(masks[:, :8], (1, 16, 3, 4, 4), extra_weight=10.0)


def test_cell_weights_move_the_balance_not_the_scale_of_the_loss():
    x0, noise, sigmas = torch.zeros(1, 2, 1, 2, 2), torch.zeros(1, 2, 1, 2, 2), torch.tensor([0.5])
    prediction = torch.zeros_like(x0)
    prediction[0, :, 0, 0, 0] = 1.0  # an error of 1 in one cell of four
    assert flow_matching_loss(prediction, x0, noise, sigmas).item() == pytest.approx(0.25)
    assert flow_matching_loss(prediction, x0, noise, sigmas, cell_weights=torch.ones(1, 1, 1, 2, 2)).item() == pytest.approx(0.25)
    weights = torch.ones(1, 1, 1, 2, 2)
    weights[0, 0, 0, 0, 0] = 7.0  # the erring cell weighs 7 of 10
    assert flow_matching_loss(prediction, x0, noise, sigmas, cell_weights=weights).item() == pytest.approx(0.7)
    # the same error on a cell of weight 1 now counts less than unweighted
    weights = torch.ones(1, 1, 1, 2, 2)
    weights[0, 0, 0, 1, 1] = 7.0
    assert flow_matching_loss(prediction, x0, noise, sigmas, cell_weights=weights).item() == pytest.approx(0.1)


def test_sampled_sigmas_follow_the_scheduler_shift():
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    sigmas, timesteps = sample_flow_sigmas(scheduler, 4096, "logit_normal", generator=torch.Generator().manual_seed(0))
    assert sigmas.shape == (4096,) and torch.all((sigmas > 0) & (sigmas <= 1))
    assert torch.allclose(timesteps, sigmas * 1000)
    # every sampled sigma is on the scheduler's own training grid
    grid = scheduler.sigmas[:-1]
    assert torch.isclose(sigmas[:, None], grid[None], atol=1e-6).any(dim=1).all()
    # shift 3 pushes noise levels up: the median is well above the logit-normal's 0.5
    assert sigmas.median() > 0.65


def test_geometric_loss_measures_rotation_angle():
    generator = torch.Generator().manual_seed(1)
    rotvecs = torch.randn(2, 22, 3, generator=generator)
    target = _six_d(roma.rotvec_to_rotmat(rotvecs))
    assert geometric_pose_loss(target, target).item() == pytest.approx(0.0, abs=1e-3)
    turn = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, 0.3]))
    turned = _six_d(turn @ roma.rotvec_to_rotmat(rotvecs))
    chordal = 2 * (3 - (1 + 2 * math.cos(0.3)))
    assert geometric_pose_loss(turned, target).item() == pytest.approx(0.3 + 0.5 * chordal, abs=1e-3)
    pred = (target + 0.3 * torch.randn(target.shape, generator=generator)).requires_grad_()
    geometric_pose_loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_motion_keep_mask_drops_at_the_requested_rate():
    keep = motion_keep_mask(10000, 0.2, generator=torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool and 0.77 < keep.float().mean() < 0.83
    assert motion_keep_mask(5, 0.0).all()


def test_fresh_pose_heads_predict_well_conditioned_rotations():
    # Near-zero 6D predictions make Gram-Schmidt's gradients explode (NaN within a few training steps),
    # so a fresh head must start at proper rotations: both 6D columns of unit length.
    from dimo_engine.models.motion_encoder import MotionEncoder, body_pose_targets
    from dimo_engine.pipelines.presets import PRESETS

    torch.manual_seed(0)
    for name in ("body_encoder", "hand_encoder"):
        encoder = MotionEncoder(**PRESETS["tiny-cpu"][name])
        size = encoder.config.image_size
        images = torch.rand(1, 2, encoder.config.num_crops, 3, size, size)  # (B, F, N, 3, s, s)
        columns = encoder.predict_pose(encoder(images)).unflatten(-1, (2, 3))  # (B, F, N, J, 2, 3)
        assert torch.allclose(columns.norm(dim=-1), torch.ones(()), atol=0.25), name

    encoder = MotionEncoder(**PRESETS["tiny-cpu"]["body_encoder"])
    rotvecs = roma.random_rotvec(2 * 22, generator=torch.Generator().manual_seed(1)).reshape(1, 2, 22, 3)
    target = body_pose_targets(rotvecs[:, :, 0], rotvecs[:, :, 1:])  # (B, F, 22, 6)
    loss = geometric_pose_loss(encoder.predict_pose(encoder(torch.rand(1, 2, 3, 64, 64)))[:, :, 0], target)
    loss.backward()
    gradient_norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in encoder.parameters() if p.grad is not None]))
    assert torch.isfinite(gradient_norm) and gradient_norm < 50
