"""Tests of the VAE stage of training (training/train_vae.py and `dimo train-vae`) on tiny synthetic clips."""

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from dimo_engine.clips import ClipDataset
from dimo_engine.errors import InputError
from dimo_engine.pipelines import load_pipeline
from dimo_engine.pipelines.presets import PRESETS
from tests.fixtures_clips import write_dataset
from training.train_vae import FrameWindows, VaeTrainConfig, autoencoder_loss, start_posterior_narrow, train_vae


@pytest.fixture(scope="module")
def clips_root(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("vae_clips"), num_clips=2, num_frames=9, size=32)


@pytest.mark.slow
def test_autoencoder_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**PRESETS["tiny"]["vae"]).train()
    # Smooth random images, (B, 3, F, H, W) in [-1, 1]: learnable, unlike white noise.
    noise = torch.rand(2, 3, 5, 32, 32, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    pixels = (torch.nn.functional.avg_pool3d(noise, (1, 5, 5), 1, (0, 2, 2)) * 3).clamp(-1, 1)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        loss, parts = autoencoder_loss(vae, pixels, kl_weight=1e-6, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts["l1"] + parts["mse"])
    assert np.mean(losses[-5:]) < 0.75 * losses[0]


@pytest.mark.slow
def test_default_learning_rate_learns_image_content_not_just_the_mean_colour():
    # A too-high learning rate leaves Wan's VAE at the batch-mean colour for good: grey-washed frames whatever
    # the DiT does (the first default model shipped so). The default rate must beat that constant by far.
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**PRESETS["tiny-cpu"]["vae"]).train()
    start_posterior_narrow(vae, VaeTrainConfig.initial_logvar)
    noise = torch.rand(4, 3, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    pixels = (torch.nn.functional.avg_pool3d(noise, (1, 5, 5), 1, (0, 2, 2)) * 3).clamp(-1, 1)
    mean_colour_l1 = (pixels - pixels.mean(dim=(0, 2, 3, 4), keepdim=True)).abs().mean().item()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=VaeTrainConfig.learning_rate)
    generator = torch.Generator().manual_seed(0)
    for _ in range(80):
        loss, parts = autoencoder_loss(vae, pixels, kl_weight=1e-6, generator=generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert parts["l1"] < 0.6 * mean_colour_l1


def test_frame_windows_draws_cropped_batches_and_refuses_bad_frame_counts(clips_root):
    clips = ClipDataset(clips_root, "train")
    windows = FrameWindows(clips, 5)
    # every view of every clip, each with num_frames - 5 + 1 starts
    assert len(windows.windows) == sum(len(clip.views) * (clip.num_frames - 4) for clip in clips)
    batch = windows.batch(np.random.default_rng(0), 3, 16)
    assert batch.shape == (3, 3, 5, 16, 16)
    assert batch.min() >= -1 and batch.max() <= 1 and batch.std() > 0
    with pytest.raises(InputError, match="4k\\+1"):
        FrameWindows(clips, 6)
    with pytest.raises(InputError, match="fewer than"):
        FrameWindows(clips, 13)


def test_train_vae_writes_a_pipeline_with_latent_statistics(clips_root, tmp_path):
    config = VaeTrainConfig(dataset=str(clips_root), preset="tiny", num_frames=5, crop_size=16, batch_size=1,
                            max_steps=3, statistics_windows=4, out=str(tmp_path / "vae"), log_every=1)
    summary = train_vae(config)
    assert summary["steps"] == 3 and len(summary["loss_first_last"]) == 2
    pipe = load_pipeline(summary["pipeline"], "cpu")
    z_dim = pipe.vae.config.z_dim
    mean, std = pipe.vae.config.latents_mean, pipe.vae.config.latents_std
    assert len(mean) == len(std) == z_dim and min(std) > 0
    # The normalised latents of the training frames are near zero-mean, unit-std per channel.
    clip = ClipDataset(clips_root, "train")[0]
    video = torch.from_numpy(clip.driving_view.frames(range(9))[..., :3]).permute(0, 3, 1, 2).float()[None] / 255
    latents = pipe.encode_video_latents(video)  # (1, C, T, h, w)
    assert latents.mean().abs() < 1.0 and 0.2 < latents.std() < 3.0
    # A fresh VAE starts near-deterministic, so latents are not drowned in posterior noise.
    posterior = pipe.vae.encode(video.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist
    assert posterior.std.mean() < 0.1
    lines = (tmp_path / "vae" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]


def test_decoder_only_keeps_the_latent_space(clips_root, tmp_path):
    first = train_vae(VaeTrainConfig(dataset=str(clips_root), preset="tiny", num_frames=5, crop_size=16, batch_size=1,
                                     max_steps=2, statistics_windows=2, out=str(tmp_path / "a")))
    second = train_vae(VaeTrainConfig(dataset=str(clips_root), pretrained=first["pipeline"], decoder_only=True,
                                      num_frames=5, crop_size=16, batch_size=1, max_steps=2, out=str(tmp_path / "b")))
    before, after = load_pipeline(first["pipeline"], "cpu").vae, load_pipeline(second["pipeline"], "cpu").vae
    for name, tensor in before.state_dict().items():
        if name.startswith(("encoder.", "quant_conv.")):
            assert torch.equal(tensor, after.state_dict()[name]), name
    assert any(not torch.equal(t, after.state_dict()[n]) for n, t in before.state_dict().items() if n.startswith("decoder."))
    assert before.config.latents_mean == after.config.latents_mean
    with pytest.raises(InputError, match="--pretrained"):
        train_vae(VaeTrainConfig(dataset=str(clips_root), decoder_only=True, out=str(tmp_path / "c")))
