"""DiMo transformer: built from a tiny Wan checkpoint it equals Wan; motion and camera inputs train and steer it."""

import torch
from diffusers import WanTransformer3DModel

from dimo_engine.errors import InputError
from dimo_engine.models import DiMoTransformer3DModel

import pytest

TINY_WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
                text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=32)


@pytest.fixture
def wan_folder(tmp_path):
    torch.manual_seed(0)
    WanTransformer3DModel(**TINY_WAN).save_pretrained(tmp_path / "wan")
    return tmp_path / "wan"


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        latents=torch.randn(1, 4, 3, 8, 8, generator=g),   # 9 video frames -> 3 latent frames
        text=torch.randn(1, 5, 16, generator=g),
        reference=torch.randn(1, 4, 1, 8, 8, generator=g),
        motion=torch.randn(1, 9, 3, 8, generator=g),       # (B, F, K, motion_dim)
        rays=torch.randn(1, 6, 9, 16, 16, generator=g),    # latent 8x8 x camera_unshuffle 2
        reference_rays=torch.randn(1, 6, 1, 16, 16, generator=g),
    )


def test_from_wan_equals_backbone_before_training(wan_folder):
    wan = WanTransformer3DModel.from_pretrained(wan_folder).eval()
    dimo = DiMoTransformer3DModel.from_wan(wan_folder, motion_dim=8, camera_unshuffle=2).eval()
    x = _inputs()
    t = torch.tensor([700.0])
    with torch.no_grad():
        expected = wan(x["latents"], t, x["text"]).sample
        got = dimo(x["latents"], t, motion_tokens=x["motion"], camera_rays=x["rays"],
                   encoder_hidden_states=x["text"]).sample
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)

        # With an in-context reference: Wan on [reference, video] with timestep 0 on the reference tokens.
        per_token_t = torch.cat([torch.zeros(1, 16), torch.full((1, 48), 700.0)], dim=1)
        expected = wan(torch.cat([x["reference"], x["latents"]], dim=2), per_token_t, x["text"]).sample[:, :, 1:]
        got = dimo(x["latents"], t, motion_tokens=x["motion"], camera_rays=x["rays"],
                   reference_latents=x["reference"], reference_rays=x["reference_rays"],
                   encoder_hidden_states=x["text"]).sample
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert got.shape == x["latents"].shape


def test_motion_and_camera_steer_output_after_one_step():
    torch.manual_seed(0)
    dimo = DiMoTransformer3DModel(**TINY_WAN, motion_dim=8, camera_unshuffle=2)
    x = _inputs()
    t = torch.tensor([500.0])
    optimiser = torch.optim.AdamW(dimo.parameters(), lr=1e-3)
    prediction = dimo(x["latents"], t, motion_tokens=x["motion"], camera_rays=x["rays"],
                      reference_latents=x["reference"], reference_rays=x["reference_rays"]).sample
    torch.nn.functional.mse_loss(prediction, torch.randn_like(prediction)).backward()
    optimiser.step()

    dimo.eval()
    with torch.no_grad():
        def run(motion, rays):
            return dimo(x["latents"], t, motion_tokens=motion, camera_rays=rays,
                        reference_latents=x["reference"], reference_rays=x["reference_rays"]).sample
        base = run(x["motion"], x["rays"])
        other_motion = run(torch.randn_like(x["motion"]), x["rays"])
        other_camera = run(x["motion"], torch.randn_like(x["rays"]))
    assert (other_motion - base).abs().max() > 1e-5
    assert (other_camera - base).abs().max() > 1e-5


def test_gradient_checkpointing_matches_plain_forward():
    torch.manual_seed(0)
    dimo = DiMoTransformer3DModel(**TINY_WAN, motion_dim=8, camera_unshuffle=2)
    for block in dimo.motion_blocks:  # non-zero so the motion branch is exercised
        torch.nn.init.normal_(block.to_out.weight, std=0.1)
    x = _inputs()
    t = torch.tensor([300.0])
    plain = dimo(x["latents"], t, motion_tokens=x["motion"], camera_rays=x["rays"]).sample
    dimo.enable_gradient_checkpointing()
    checkpointed = dimo(x["latents"], t, motion_tokens=x["motion"], camera_rays=x["rays"]).sample
    torch.testing.assert_close(checkpointed, plain)
    checkpointed.sum().backward()
    assert dimo.motion_blocks[0].to_q.weight.grad is not None


def test_drop_motion_and_clear_errors():
    dimo = DiMoTransformer3DModel(**TINY_WAN, motion_dim=8, camera_unshuffle=2)
    motion = torch.randn(2, 9, 3, 8)
    dropped = dimo.drop_motion(motion, torch.tensor([True, False]))
    assert torch.equal(dropped[1], motion[1])
    assert torch.allclose(dropped[0], dimo.null_motion_tokens[0].expand(9, 3, 8))
    x = _inputs()
    with pytest.raises(InputError, match="frames"):
        dimo(x["latents"], torch.tensor([1.0]), motion_tokens=torch.randn(1, 8, 3, 8))
    with pytest.raises(InputError, match="frames"):
        dimo(x["latents"], torch.tensor([1.0]), camera_rays=torch.randn(1, 6, 5, 16, 16))
    with pytest.raises(InputError, match="pixels"):
        dimo(x["latents"], torch.tensor([1.0]), camera_rays=torch.randn(1, 6, 9, 8, 8))
