"""DiMo transformer: built from a tiny Wan checkpoint it equals Wan; motion and camera inputs train and steer it."""

import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor
from einops import rearrange

from dimo_engine.errors import InputError
from dimo_engine.models import DiMoTransformer3DModel
from dimo_engine.models.transformer_dimo import MotionAttnProcessor

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


class PlainMotionAttention:
    """The motion cross-attention written out with torch's own attention, as the model computed it before it went
    through diffusers' processors; counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None):
        self.calls += 1
        frames = encoder_hidden_states.shape[1]
        query = attn.q_rms(rearrange(attn.to_q(attn.norm_q(hidden_states)), "b (t s) (h d) -> (b t) h s d",
                                     t=frames, h=attn.heads))
        motion = attn.norm_kv(encoder_hidden_states)
        key = attn.k_rms(rearrange(attn.to_k(motion), "b t m (h d) -> (b t) h m d", h=attn.heads))
        value = rearrange(attn.to_v(motion), "b t m (h d) -> (b t) h m d", h=attn.heads)
        attended = F.scaled_dot_product_attention(query, key, value)
        return attn.to_out(rearrange(attended, "(b t) h s d -> b (t s) (h d)", t=frames))


def test_motion_cross_attention_is_a_diffusers_attention_module_whose_processor_can_be_swapped():
    torch.manual_seed(0)
    dimo = DiMoTransformer3DModel(**TINY_WAN, motion_dim=8, camera_unshuffle=2).eval()
    for block in dimo.motion_blocks:  # non-zero so the motion branch shows in the output
        torch.nn.init.normal_(block.to_out.weight, std=0.1)
    processors = dimo.attn_processors
    motion_names = [name for name in processors if name.startswith("motion_blocks.")]
    assert motion_names == [f"motion_blocks.{i}.processor" for i in range(len(dimo.motion_blocks))]
    assert all(isinstance(processors[name], MotionAttnProcessor) for name in motion_names)
    assert any(isinstance(processor, WanAttnProcessor) for processor in processors.values())

    x = _inputs()
    t = torch.tensor([300.0])

    def run():
        with torch.no_grad():
            return dimo(x["latents"], t, motion_tokens=x["motion"], camera_rays=x["rays"],
                        reference_latents=x["reference"], reference_rays=x["reference_rays"]).sample

    through_dispatch = run()
    plain = PlainMotionAttention()
    dimo.set_attn_processor({name: plain if name in motion_names else processor
                             for name, processor in processors.items()})
    assert all(dimo.attn_processors[name] is plain for name in motion_names)
    written_out = run()
    assert plain.calls == len(dimo.motion_blocks)
    torch.testing.assert_close(through_dispatch, written_out, rtol=0, atol=1e-6)
    assert (through_dispatch - dimo(x["latents"], t, camera_rays=x["rays"], reference_latents=x["reference"],
                                    reference_rays=x["reference_rays"], use_motion=False).sample).abs().max() > 1e-4
