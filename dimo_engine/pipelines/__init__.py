"""DiMo pipelines: the diffusers pipeline, fresh random pipelines by preset, and loading a checkpoint folder."""

from __future__ import annotations

from pathlib import Path

import torch

from dimo_engine.errors import InputError
from dimo_engine.pipelines.pipeline_dimo import DiMoPipeline, DiMoPipelineOutput, MotionTokens
from dimo_engine.pipelines.pipeline_dimo_character import DiMoCharacterPipeline, create_character_pipeline
from dimo_engine.pipelines.presets import PRESETS

__all__ = ["DiMoCharacterPipeline", "DiMoPipeline", "DiMoPipelineOutput", "MotionTokens", "create_character_pipeline",
           "create_random_pipeline", "load_pipeline", "save_pipeline", "PRESETS"]
PIPELINE_CLASSES = {"DiMoPipeline": DiMoPipeline, "DiMoCharacterPipeline": DiMoCharacterPipeline}


def create_random_pipeline(seed: int = 0, preset: str = "tiny") -> DiMoPipeline:
    """A DiMo pipeline with random weights (deterministic from `seed`) at a preset size; untrained, so its
    videos are noise-like, and its keypoint locator is marked untrained."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler

    from dimo_engine.models import DiMoTransformer3DModel, KeypointLocator, MotionEncoder

    if preset not in PRESETS:
        raise InputError(f"Unknown model preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    sizes = PRESETS[preset]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = DiMoPipeline(
            vae=AutoencoderKLWan(**sizes["vae"]),
            transformer=DiMoTransformer3DModel(**sizes["transformer"]),
            body_encoder=MotionEncoder(**sizes["body_encoder"]),
            hand_encoder=MotionEncoder(**sizes["hand_encoder"]),
            scheduler=FlowMatchEulerDiscreteScheduler(**sizes["scheduler"]),
            keypoint_locator=KeypointLocator(**sizes["keypoint_locator"]),
            **sizes["pipeline"],
        )
    for module in (pipe.vae, pipe.transformer, pipe.body_encoder, pipe.hand_encoder, pipe.keypoint_locator):
        module.eval()
    return pipe


def _resolve_device(device) -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def load_pipeline(path_or_none, device="auto", dtype=None) -> DiMoPipeline:
    """Load a DiMo checkpoint folder (diffusers layout, `model_index.json`) onto `device` ("auto": CUDA, MPS or
    CPU). None gives a fresh random "tiny-cpu" pipeline (untrained: the stand-in until a checkpoint is installed)."""
    device = _resolve_device(device)
    if path_or_none is None:
        pipe = create_random_pipeline(seed=0, preset="tiny-cpu")
    else:
        folder = Path(path_or_none).expanduser()
        if not (folder / "model_index.json").is_file():
            raise InputError(
                f"{folder}: no DiMo checkpoint there (model_index.json is missing); give a folder written by "
                f"`pipe.save_pretrained` or `dimo train`."
            )
        pipeline_class = PIPELINE_CLASSES.get(_class_name(folder), DiMoPipeline)
        if pipeline_class is DiMoCharacterPipeline:  # small, pixel space: float32 throughout
            return pipeline_class.from_pretrained(folder, local_files_only=True).to(device)
        # Only the transformer changes dtype; the VAE and encoders stay float32 (cheap, and more exact).
        component_dtypes = None if dtype is None else {"transformer": dtype, "default": torch.float32}
        pipe = DiMoPipeline.from_pretrained(folder, local_files_only=True, dtype=component_dtypes)
        dtype = None
    if dtype is not None:
        pipe.transformer.to(dtype)
    return pipe.to(device)


def _class_name(folder: Path) -> str | None:
    import json

    try:
        return json.loads((folder / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None  # from_pretrained names what is wrong


def save_pipeline(pipe: DiMoPipeline, folder) -> Path:
    """`save_pretrained` (safetensors) into a temporary sibling folder, then swapped in: never half-written."""
    from blender_addon.core.atomic_io import atomic_folder

    folder = Path(folder)
    with atomic_folder(folder) as partial:
        pipe.save_pretrained(str(partial), safe_serialization=True)
    return folder

