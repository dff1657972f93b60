"""The model options every engine command shares (`--model`, `--device`, `--dtype`), checking a
model folder before it loads, and loading the pipeline from them; not a command itself."""

from __future__ import annotations

import argparse
import json
import struct
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


_REWRITE = "save the pipeline again (save_pretrained or 'dimo train') or copy the folder again"


def check_model_folder(folder: Path) -> None:
    """Refuse, in one sentence, a model folder `from_pretrained` would fail on with a traceback.

    Checks that model_index.json is a JSON object naming a pipeline class importable from
    `dimo_engine.pipelines`, that every component that class needs has its folder with a config,
    that model components hold weights, and that every safetensors file is whole (its header
    parses and the file is as long as the header says).
    """
    from diffusers import DiffusionPipeline

    from dimo_engine import pipelines

    index_path = folder / "model_index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = "is empty" if index_path.is_file() and index_path.stat().st_size == 0 else f"is not valid JSON ({error})"
        raise InputError(f"model folder {folder}: model_index.json {reason}; {_REWRITE}") from None
    if not isinstance(index, dict):
        raise InputError(f"model folder {folder}: model_index.json is not a JSON object; {_REWRITE}")
    class_name = index.get("_class_name")
    pipeline_class = getattr(pipelines, class_name, None) if isinstance(class_name, str) else None
    if not (isinstance(pipeline_class, type) and issubclass(pipeline_class, DiffusionPipeline)):
        raise InputError(f"model folder {folder} holds a {class_name or 'unnamed'} pipeline, not one of this engine's "
                         f"({', '.join(n for n in pipelines.__all__ if n.endswith('Pipeline'))}); pass a DiMo pipeline "
                         f"folder, e.g. the one 'dimo train' wrote")
    expected, _ = pipeline_class._get_signature_keys(pipeline_class)
    optional = set(getattr(pipeline_class, "_optional_components", []))
    for name in expected:
        entry = index.get(name)
        present = isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1] is not None
        if not present:
            if name in optional:
                continue
            raise InputError(f"model folder {folder}: model_index.json names no '{name}' component, which a "
                             f"{class_name} needs; {_REWRITE}")
        component = folder / name
        configs = [component / "config.json", component / "scheduler_config.json"]
        if not component.is_dir() or not any(config.is_file() for config in configs):
            raise InputError(f"model folder {folder}: the '{name}' component is missing (no {name}/ folder with a "
                             f"config); {_REWRITE}")
        weights = sorted(component.glob("*.safetensors")) + sorted(component.glob("*.bin"))
        if (component / "config.json").is_file() and not weights:
            raise InputError(f"model folder {folder}: the '{name}' component has no weights (no .safetensors file "
                             f"in {name}/); {_REWRITE}")
        for path in weights:
            if path.suffix == ".safetensors":
                _check_safetensors(path, folder)


def _check_safetensors(path: Path, folder: Path) -> None:
    """A safetensors file is an 8-byte header length, a JSON header, then exactly the bytes it lists."""
    where = f"model folder {folder}: {path.relative_to(folder)}"
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            if header_length > size - 8:
                raise ValueError("header runs past the end")
            header = json.loads(handle.read(header_length))
        ends = [int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"]
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise InputError(f"{where} is not a readable safetensors file (truncated or damaged); {_REWRITE}") from None
    expected = 8 + header_length + max(ends, default=0)
    if size != expected:
        raise InputError(f"{where} is truncated or damaged ({size} bytes where its header says {expected}); {_REWRITE}")


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
    check_model_folder(path)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    diffusers_logging.disable_progress_bar()
    # float32 is what checkpoints are stored in: asking for it would only re-cast (and warn).
    try:
        pipe = load_pipeline(str(path), device, None if dtype == torch.float32 else dtype)
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        # What check_model_folder cannot see (a config naming unknown sizes, weights of another shape).
        raise InputError(f"model folder {path} cannot be loaded ({type(error).__name__}: "
                         f"{' '.join(str(error).split())[:160]}); {_REWRITE}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe, path
