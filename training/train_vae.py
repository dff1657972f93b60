"""Train the pipeline's video VAE (diffusers' AutoencoderKLWan) as an autoencoder on rendered clip frames.

There are no pretrained weights here, and a random VAE turns every generated latent into noise, so the
default model is trained in stages: this VAE first, then (with its latents cached) the DiT and encoders.
Windows of 4k+1 frames and random spatial crops keep a CPU step cheap: the VAE is convolutional, and a
5-frame window already runs every causal-cache path of a 17-frame clip (the first frame alone, then one
4-frame chunk). At the end `latents_mean`/`latents_std` in the VAE config are set from encoded data,
so the DiT sees unit-scale latents. Output: a whole DiMoPipeline folder whose VAE is the trained one.

    dimo train-vae --dataset data/clips --preset tiny-cpu --max-minutes 10 --out runs/default/vae
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio

from dimo_engine.clips import ClipDataset, ClipView
from dimo_engine.errors import InputError
from training.pairs import view_pixels


@dataclass
class VaeTrainConfig:
    dataset: str = "data/clips"
    split: str = "train"
    preset: str = "tiny-cpu"  # the random pipeline the VAE belongs to (ignored with `pretrained`)
    pretrained: str = ""  # start from this DiMoPipeline folder instead
    num_frames: int = 5  # frames per training window (4k+1)
    crop_size: int = 64  # random square crop of the full-size frames (0: whole frames)
    batch_size: int = 2
    max_steps: int = 1000
    max_minutes: float = 0.0  # also stop after this much wall time (0: no limit)
    # Wan's VAE at this size stalls at the batch-mean colour with AdamW above ~5e-4 (measured: 1e-3 never leaves
    # it, 1e-4 overfits a batch in 80 steps); tests/test_train_vae.py keeps this default honest.
    learning_rate: float = 1e-4
    kl_weight: float = 1e-6  # small: a near-deterministic autoencoder, the KL only keeps the posterior tame
    initial_logvar: float = -8.0  # a random VAE starts with posterior std ~1, i.e. latents drowned in noise; start near 0.02
    mse_weight: float = 1.0  # the loss is L1 + mse_weight * MSE + kl_weight * KL
    decoder_only: bool = False  # fine-tune the decoder of `pretrained` alone: its latent space (and latent caches) stay valid
    statistics_windows: int = 64  # full-size windows encoded to set latents_mean/std
    seed: int = 0
    out: str = "runs/default/vae"
    log_every: int = 10


def autoencoder_loss(vae, pixels: torch.Tensor, kl_weight: float, mse_weight: float = 1.0,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction (L1 + MSE) of `pixels` (B, 3, F, H, W) in [-1, 1] through a posterior sample, plus a small KL."""
    posterior = vae.encode(pixels).latent_dist
    # (B, C, T, h, w): eps drawn on the CPU generator so a seeded run repeats
    z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator).to(pixels.device)
    reconstruction = vae.decode(z).sample  # (B, 3, F, H, W)
    l1 = (reconstruction - pixels).abs().mean()
    mse = F.mse_loss(reconstruction, pixels)
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    loss = l1 + mse_weight * mse + kl_weight * kl
    return loss, {"loss": loss.item(), "l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


@torch.no_grad()
def start_posterior_narrow(vae, logvar: float) -> None:
    """Bias the log-variance half of the encoder's last 1x1 conv to `logvar`.

    With a fresh encoder the posterior std is ~1 while the means are small, so a sampled latent is mostly
    noise and the decoder learns to ignore it; a few hundred CPU steps are too few for the KL-free loss to
    shrink it. Starting narrow makes the autoencoder near-deterministic from the first step."""
    z_dim = vae.config.z_dim
    vae.quant_conv.bias[z_dim:] = logvar


class FrameWindows:
    """Every (view, first frame) window of a clip dataset; draws random cropped windows as VAE batches."""

    def __init__(self, clips: ClipDataset, num_frames: int):
        if (num_frames - 1) % 4:
            raise InputError(f"num_frames={num_frames} is not 4k+1 (Wan's VAE needs 1, 5, 9, 13, 17, ...); pick one of those.")
        self.num_frames = num_frames
        self.windows: list[tuple[ClipView, int]] = []
        for clip in clips:
            if clip.num_frames < num_frames:
                raise InputError(f"{clip.clip_id}: {clip.num_frames} frames, fewer than num_frames={num_frames}; lower num_frames.")
            for view in clip.views.values():
                self.windows.extend((view, start) for start in range(clip.num_frames - num_frames + 1))
        if not self.windows:
            raise InputError(f"{clips.root}: no clips to train the VAE on; render some with `dimo render-clips`.")

    def batch(self, rng: np.random.Generator, batch_size: int, crop_size: int) -> torch.Tensor:
        """(B, 3, F, crop, crop) in [-1, 1]; crop 0 keeps whole frames."""
        samples = []
        for index in rng.integers(len(self.windows), size=batch_size):
            view, start = self.windows[index]
            frames = torch.from_numpy(view.frames(range(start, start + self.num_frames))[..., :3])  # (F, H, W, 3) uint8
            height, width = frames.shape[1:3]
            if crop_size and crop_size < min(height, width):
                top, left = rng.integers(height - crop_size + 1), rng.integers(width - crop_size + 1)
                frames = frames[:, top:top + crop_size, left:left + crop_size]
                if rng.random() < 0.5:  # a mirrored person is still a person
                    frames = frames.flip(2)
            samples.append(frames.permute(3, 0, 1, 2).float() / 127.5 - 1.0)  # (3, F, h, w)
        return torch.stack(samples)


@torch.no_grad()
def latent_statistics(vae, clips: ClipDataset, num_frames: int, windows: int, seed: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means of `windows` random full-size windows."""
    rng = np.random.default_rng(seed)
    views = [view for clip in clips for view in clip.views.values()]
    sums = sum_squares = None
    count = 0
    for index in rng.choice(len(views), size=min(windows, len(views)), replace=False):
        view = views[index]
        total = len(view.frame_paths)
        start = int(rng.integers(total - num_frames + 1))
        pixels = view_pixels(view, range(start, start + num_frames), *view.frames([0]).shape[1:3])  # (F, 3, H, W)
        mean = vae.encode(pixels.permute(1, 0, 2, 3)[None] * 2.0 - 1.0).latent_dist.mean.double()  # (1, C, T, h, w)
        per_channel = mean.transpose(0, 1).flatten(1)  # (C, N)
        sums = per_channel.sum(1) if sums is None else sums + per_channel.sum(1)
        sum_squares = per_channel.pow(2).sum(1) if sum_squares is None else sum_squares + per_channel.pow(2).sum(1)
        count += per_channel.shape[1]
    channel_mean = sums / count
    channel_std = (sum_squares / count - channel_mean.pow(2)).clamp_min(1e-8).sqrt()
    return channel_mean.tolist(), channel_std.tolist()


@torch.no_grad()
def reconstruction_psnr(vae, clips: ClipDataset, num_frames: int, windows: int, seed: int) -> float:
    """Mean PSNR (dB, images in [0, 1]) of full-size windows through the posterior mode."""
    rng = np.random.default_rng(seed + 1)
    views = [view for clip in clips for view in clip.views.values()]
    scores = []
    for index in rng.choice(len(views), size=min(windows, len(views)), replace=False):
        view = views[index]
        pixels = view_pixels(view, range(num_frames), *view.frames([0]).shape[1:3]).permute(1, 0, 2, 3)[None]  # (1,3,F,H,W)
        decoded = vae.decode(vae.encode(pixels * 2.0 - 1.0).latent_dist.mode()).sample
        scores.append(peak_signal_noise_ratio((decoded + 1.0) / 2.0, pixels, data_range=1.0).item())
    return float(np.mean(scores))


def train_vae(config: VaeTrainConfig) -> dict:
    """Train the VAE of a (random or saved) pipeline per `config`; writes `<out>/pipeline` and returns a summary."""
    from dimo_engine.pipelines import create_random_pipeline, load_pipeline, save_pipeline

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    clips = ClipDataset(config.dataset, config.split)
    windows = FrameWindows(clips, config.num_frames)
    pipe = load_pipeline(config.pretrained, "cpu", torch.float32) if config.pretrained else create_random_pipeline(config.seed, config.preset)
    vae = pipe.vae.float().train()
    if not config.pretrained:
        if config.decoder_only:
            raise InputError("--decoder-only fine-tunes a trained VAE's decoder; give its pipeline with --pretrained.")
        start_posterior_narrow(vae, config.initial_logvar)
    if config.decoder_only:
        vae.encoder.requires_grad_(False)
        vae.quant_conv.requires_grad_(False)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.0)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    history, step = [], 0
    log = (out / "metrics.jsonl").open("w")
    while step < config.max_steps:
        if config.max_minutes and time.perf_counter() - started > config.max_minutes * 60:
            break
        pixels = windows.batch(rng, config.batch_size, config.crop_size)
        loss, parts = autoencoder_loss(vae, pixels, config.kl_weight, config.mse_weight, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        step += 1
        history.append(parts["loss"])
        if step % config.log_every == 0 or step == 1:
            record = {"step": step, **parts, "seconds": round(time.perf_counter() - started, 1)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps(record), flush=True)
    log.close()
    train_seconds = time.perf_counter() - started

    vae.eval()
    clip_frames = clips[0].num_frames
    stats_frames = clip_frames - (clip_frames - 1) % 4  # the longest 4k+1 window of a clip
    if not config.decoder_only:  # a frozen encoder keeps its latent statistics
        latents_mean, latents_std = latent_statistics(vae, clips, stats_frames, config.statistics_windows, config.seed)
        vae.register_to_config(latents_mean=latents_mean, latents_std=latents_std)
    summary = {
        "steps": step, "train_seconds": round(train_seconds, 1),
        "loss_first_last": [history[0], history[-1]] if history else None,
        "reconstruction_psnr_db": reconstruction_psnr(vae, clips, stats_frames, 8, config.seed),
        "windows": len(windows.windows), "clips": len(clips),
    }
    save_pipeline(pipe, out / "pipeline")
    summary["pipeline"] = str(out / "pipeline")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


# -- command line (also `dimo train-vae`) --------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = VaeTrainConfig()
    for name, value in vars(defaults).items():
        if isinstance(value, bool):
            parser.add_argument(f"--{name.replace('_', '-')}", action="store_true", dest=name)
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, dest=name)


def config_from_args(args: argparse.Namespace) -> VaeTrainConfig:
    return VaeTrainConfig(**{name: getattr(args, name) for name in vars(VaeTrainConfig())})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the DiMo pipeline's VAE as an autoencoder on rendered clips.")
    add_arguments(parser)
    print(json.dumps(train_vae(config_from_args(parser.parse_args(argv)))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
