"""The model options every engine command shares (`--model`, `--device`, `--dtype`) and loading
the pipeline from them; not a command itself."""

from __future__ import annotations

import argparse
from pathlib import Path

from dimo_engine.errors import InputError

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "weights" / "default"


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", type=Path, default=None,
                       help=f"DiMo pipeline folder (diffusers layout); default: the shipped model in {DEFAULT_MODEL_DIR}")
    group.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if available")
    group.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"),
                       help="default: float32 on CPU, bfloat16 on CUDA")


def resolve_model_path(model: Path | None) -> Path:
    if model is None:
        if not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
            raise InputError(f"no default model is installed yet (nothing in {DEFAULT_MODEL_DIR}); pass --model PATH "
                             f"to a DiMo pipeline folder, e.g. one written by 'dimo train'")
        return DEFAULT_MODEL_DIR
    model = model.expanduser()
    if not (model / "model_index.json").is_file():
        raise InputError(f"--model {model} is not a DiMo pipeline folder (no model_index.json in it); pass the folder "
                         f"that 'dimo train' or save_pretrained wrote")
    return model


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return torch.device(name)


def resolve_dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def load_model_from_args(args: argparse.Namespace):
    """(pipeline, model path) from the parsed model options; the pipeline's own progress bar is off."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    from dimo_engine.pipelines import load_pipeline

    path = resolve_model_path(args.model)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    diffusers_logging.disable_progress_bar()
    # float32 is what checkpoints are stored in: asking for it would only re-cast (and warn).
    pipe = load_pipeline(str(path), device, None if dtype == torch.float32 else dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe, path
