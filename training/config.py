"""Training configuration: one dataclass, filled from a TOML file in training/configs/ and overridden by field name.

`load_config("tiny-cpu", {"max_steps": "20"})` reads training/configs/tiny-cpu.toml (or any .toml
path), checks every key is a known field, and checks and converts each value by the field's type
(pydantic: types, ranges, the allowed words), override strings parsed.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from dimo_engine.errors import InputError

CONFIG_DIR = Path(__file__).parent / "configs"


# The setting types both training configs (this one and train_character's) are built from.
Positive = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]
Ratio = Annotated[float, Field(ge=0, le=1)]


def validation_problem(error: ValidationError) -> str:
    """pydantic's first complaint as the tail of one sentence: "input should be greater than or equal to 1"."""
    message = error.errors()[0]["msg"]
    return message[0].lower() + message[1:]


@dataclass(config=ConfigDict(extra="forbid"))
class TrainConfig:
    # data
    dataset: str = "datasets/clips"  # root of a rendered clip dataset (dimo render-clips)
    split: str = "train"
    num_frames: Positive = 17  # frames per example; Wan's VAE wants 4k+1
    height: Positive = 128
    width: Positive = 128
    window_stride: Positive = 4  # temporal windows start at multiples of this (cached latents exist per window)
    same_view_ratio: NonNegative = 0.3
    cross_view_ratio: NonNegative = 0.5
    moving_camera_ratio: NonNegative = 0.2
    use_latent_cache: bool = True  # read views/<name>/latents_*.safetensors when present
    augment_driving: bool = True  # perspective + appearance augmentation of driving frames
    num_workers: Count = 0

    # model
    pretrained: str = ""  # a DiMoPipeline folder to start from; empty = random weights of `preset`
    preset: str = "tiny-cpu"  # create_random_pipeline preset when `pretrained` is empty
    wan_path: str = ""  # a local Wan2.1 diffusers folder used as the backbone (DiMoTransformer3DModel.from_wan)
    trainable: Literal["all", "new", "new+blocks"] = "all"  # all | new (motion/camera layers, encoders, heads) | new+blocks (and the last `trainable_blocks` DiT blocks)
    trainable_blocks: Count = 0
    gradient_checkpointing: bool = False
    control: Literal["none", "pose2d", "joints3d-noisy"] = "none"  # none | pose2d | joints3d-noisy: a benchmark baseline's pixel-aligned control (training/baselines.py)

    # objective
    weighting_scheme: str = "logit_normal"  # timestep density (diffusers.training_utils)
    loss_weighting: str = "none"  # per-sample loss weighting (compute_loss_weighting_for_sd3)
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    aux_weight: float = 1.0  # initial weight of the geometric pose loss
    aux_hold_steps: Count = 0  # steps at full weight
    aux_end_step: Count = 100  # S: the weight is exactly 0 from here on and the heads are skipped
    aux_schedule: Literal["constant", "linear", "cosine"] = "cosine"  # constant | linear | cosine
    hand_aux_weight: float = 1.0  # relative weight of the hand head within the geometric loss
    motion_dropout: Ratio = 0.1  # probability of dropping a sample's motion tokens (CFG)
    person_loss_weight: NonNegative = 0.0  # extra flow-loss weight on latent cells the person covers (1 + this x coverage)

    # optimisation
    seed: int = 0
    max_steps: Count = 200
    batch_size: Positive = 1
    gradient_accumulation_steps: Positive = 1
    learning_rate: NonNegative = 1e-4
    weight_decay: NonNegative = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    max_grad_norm: float = 1.0
    lr_warmup_steps: Count = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # no | fp16 | bf16 (accelerate)
    cpu: bool = False  # train on the CPU even where a GPU is present (also what makes multi-process CPU runs use gloo)
    use_ema: bool = True
    ema_decay: float = 0.999

    # keypoint locator (trained on the renders' 2D joints, exported with the pipeline)
    locator_steps: Count = 0  # 0 skips it
    locator_learning_rate: float = 3e-4

    # output
    output_dir: str = "runs/tiny-cpu"
    checkpoint_every: Count = 50  # 0: no checkpoints
    checkpoints_total_limit: Positive = 2
    log_every: Positive = 1
    tensorboard: bool = True  # also log to TensorBoard when it is installed
    export: bool = True  # write a DiMoPipeline folder to <output_dir>/pipeline at the end

    @property
    def pair_ratios(self) -> dict[str, float]:
        return {"same_view": self.same_view_ratio, "cross_view": self.cross_view_ratio, "moving_camera": self.moving_camera_ratio}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


ADAPTERS = {name: TypeAdapter(TrainConfig.__pydantic_fields__[name].rebuild_annotation()) for name in FIELDS}


def _convert(name: str, value, source: str):
    """One setting checked and converted by its field's type (pydantic): text from the command line is parsed,
    a TOML value must already have the type (an int may stand for a float)."""
    try:
        return ADAPTERS[name].validate_python(value, strict=not isinstance(value, str))
    except ValidationError as error:
        problem = error.errors()[0]
        kind = type(FIELDS[name].default).__name__
        if problem["type"].endswith(("_parsing", "_type")):
            raise InputError(f"{source}: {name} = {value!r} is not a {kind}; give e.g. {name}={FIELDS[name].default!r}.") from None
        raise InputError(f"{source}: {name} = {value!r}: {validation_problem(error)}.") from None


def config_path(name_or_path: str) -> Path:
    """A config name of training/configs/ ("tiny-cpu") or a path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return path
    named = CONFIG_DIR / f"{name_or_path}.toml"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
    raise InputError(f"training config {name_or_path!r} is neither a .toml file nor one of: {known}; pick one of those or give a path.")


def _file_values(path: Path, seen: tuple = ()) -> dict:
    """Field values of a TOML config file; a top-level `base = "name"` first takes that config's values, so a
    variant (a baseline, an ablation) names only what it changes."""
    if path.resolve() in seen:
        raise InputError(f"{path}: its base configs lead back to itself; point base at another config.")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path} is not valid TOML ({error}); fix the file.") from None
    flat = {}
    for key, value in data.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    values = {}
    base = flat.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise InputError(f"{path}: base = {base!r} must name a config, e.g. base = \"default-model\".")
        values.update(_file_values(config_path(base), (*seen, path.resolve())))
    for key, value in flat.items():
        if key not in FIELDS:
            raise InputError(f"{path}: {key!r} is not a training setting; see training/config.py for the names.")
        values[key] = _convert(key, value, str(path))
    return values


def load_config(name_or_path: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """TrainConfig from a TOML file (sections are only for reading; keys are field names; `base` names a config
    to start from) plus overrides."""
    values = _file_values(config_path(name_or_path)) if name_or_path else {}
    for key, value in (overrides or {}).items():
        key = key.replace("-", "_")
        if key not in FIELDS:
            raise InputError(f"override {key!r} is not a training setting; see training/config.py for the names.")
        values[key] = _convert(key, value, "override")
    config = TrainConfig(**values)
    check_config(config)
    return config


def check_config(config: TrainConfig) -> None:
    if (config.num_frames - 1) % 4:
        raise InputError(f"num_frames = {config.num_frames}: Wan's VAE needs 4k+1 frames; use e.g. 5, 9, 17.")
    if sum(config.pair_ratios.values()) <= 0:  # each is >= 0 by its type
        raise InputError("same_view_ratio, cross_view_ratio and moving_camera_ratio must not all be 0.")


def config_as_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def parse_set_overrides(pairs: list[str]) -> dict[str, str]:
    """["max_steps=10", "learning_rate=3e-4"] -> {"max_steps": "10", ...}."""
    overrides = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise InputError(f"--set {pair!r} needs the form key=value, e.g. --set max_steps=10.")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = value
    return overrides
