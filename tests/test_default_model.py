"""The shipped default model (dimo_engine/weights/default): complete, small, trained, and generates at its size."""

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio

from blender_addon.camera_path import CameraPath
from blender_addon.camera_rigs import intrinsics_from_fov, look_at
from dimo_engine.cli.model_args import DEFAULT_MODEL_DIR, resolve_model_path
from dimo_engine.pipelines import create_random_pipeline, load_pipeline

COMPONENTS = ("vae", "transformer", "body_encoder", "hand_encoder", "keypoint_locator", "scheduler")


def orbit(num_frames: int, size: int, sweep_deg: float = 90.0) -> CameraPath:
    angles = np.radians(np.linspace(0.0, sweep_deg, num_frames))
    eyes = np.stack([6 * np.sin(angles), -6 * np.cos(angles), np.full_like(angles, 1.2)], axis=-1)
    return CameraPath(width=size, height=size, fps=12.0, frames=np.arange(num_frames),
                      K=np.repeat(intrinsics_from_fov(40.0, size, size)[None], num_frames, 0),
                      world_to_camera=np.stack([look_at(eye, (0.0, 0.0, 0.9)) for eye in eyes]))


def figure_image(size: int, shift: int = 0) -> torch.Tensor:
    """A person-like stand-in (3, H, W) in [0, 1]: head, torso and legs on a backdrop over a darker floor."""
    image = torch.empty(3, size, size)
    image[:] = torch.tensor([0.55, 0.7, 0.6])[:, None, None]
    image[:, size * 6 // 10:] = torch.tensor([0.25, 0.2, 0.22])[:, None, None]
    centre = size // 2 + shift
    image[:, size * 3 // 10:size * 3 // 10 + size // 12, centre - size // 32:centre + size // 32] = torch.tensor([0.8, 0.6, 0.5])[:, None, None]
    image[:, size * 4 // 10:size * 6 // 10, centre - size // 20:centre + size // 20] = torch.tensor([0.5, 0.2, 0.6])[:, None, None]
    image[:, size * 6 // 10:size * 3 // 4, centre - size // 24:centre + size // 24] = torch.tensor([0.6, 0.35, 0.3])[:, None, None]
    return image


@pytest.fixture(scope="module")
def shipped():
    return load_pipeline(DEFAULT_MODEL_DIR, "cpu")


def test_shipped_folder_is_the_cli_default_complete_and_under_60_mb():
    assert resolve_model_path(None) == DEFAULT_MODEL_DIR
    files = [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 60_000_000
    for component in COMPONENTS:
        assert (DEFAULT_MODEL_DIR / component).is_dir(), component
    weights = [p for p in files if p.suffix in (".safetensors", ".bin", ".pt", ".ckpt")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)
    assert (DEFAULT_MODEL_DIR / "model_index.json").is_file()


def test_shipped_model_is_trained_not_random(shipped):
    random = create_random_pipeline(seed=0, preset="tiny-cpu")
    assert shipped.keypoint_locator is not None and shipped.keypoint_locator.config.trained
    assert not np.allclose(shipped.vae.config.latents_std, random.vae.config.latents_std)
    # The trained VAE reconstructs a simple figure far better than a random one of the same size (the colourless
    # first default VAE scored 19.2 dB here).
    size = shipped.config.height
    video = torch.stack([figure_image(size, shift) for shift in range(5)])[None]  # (1, 5, 3, H, W)

    def psnr(pipe) -> float:
        with torch.no_grad():
            decoded = pipe.decode_latents(pipe.encode_video_latents(video))  # (1, 3, F, H, W) in [-1, 1]
        return peak_signal_noise_ratio((decoded.permute(0, 2, 1, 3, 4) + 1) / 2, video, data_range=1.0).item()

    trained, untrained = psnr(shipped), psnr(random)
    assert trained > 21.0 and trained > untrained + 5.0, (trained, untrained)  # shipped: 22.9 dB


@pytest.mark.slow
def test_shipped_model_generates_frames_of_its_size(shipped):
    n, height, width = shipped.config.num_frames, shipped.config.height, shipped.config.width
    driving = torch.stack([figure_image(height, shift=i // 2) for i in range(n)])  # (F, 3, H, W)
    reference = (figure_image(height).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    # No hand boxes: the shipped keypoint locator must find them.
    out = shipped(reference, driving_frames=driving, target_cameras=orbit(n, width), num_inference_steps=2,
                  generator=torch.Generator().manual_seed(0))
    frames = out.frames
    assert frames.shape == (1, n, height, width, 3)
    assert np.isfinite(frames).all() and frames.min() >= 0.0 and frames.max() <= 1.0
    assert frames.std() > 0.01  # a picture, not a flat colour
