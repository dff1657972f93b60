"""Train DiMo on rendered clips with accelerate: config -> data -> model -> accelerator.prepare -> loop -> checkpoint.

Run `dimo train --config tiny-cpu --dataset PATH` (or `accelerate launch -m training.train --config
wan-1.3b ...` on many GPUs). Every batch and every random draw is fixed by (seed, step), so `--resume`
continues the exact loss curve of an uninterrupted run, on any number of processes. Each checkpoint
`OUTPUT/checkpoints/step_N/` holds accelerate's state (for `--resume`) and `pipeline/`, the pipeline at that step
(for `dimo generate --model OUTPUT/checkpoints/step_N/pipeline`).
"""

from __future__ import annotations

import argparse
import collections
import faulthandler
import gc
import importlib.util
import json
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration
from diffusers.training_utils import EMAModel
from torch import nn
from tqdm.auto import tqdm

from blender_addon.core.atomic_io import replace_folder
from dimo_engine.clips import ClipDataset
from training.cache_latents import encode_latent_distribution, sample_latents, vae_cache_tag
from training.config import TrainConfig, config_as_dict, load_config, parse_set_overrides
from training.losses import (
    annealed_weight,
    flow_matching_loss,
    geometric_pose_loss,
    motion_keep_mask,
    noisy_latents,
    person_cell_weights,
    sample_flow_sigmas,
)
from training.pairs import SampleNumbers, ViewPairDataset

CHECKPOINT_PATTERN = re.compile(r"^step_(\d+)$")
CHECKPOINT_PIPELINE = "pipeline"  # in each checkpoint folder: the pipeline at that step, for `dimo generate --model`


# -- model ---------------------------------------------------------------------------------------------------


def build_pipeline(config: TrainConfig):
    """The DiMoPipeline to train: a saved one, or random weights of `preset`, optionally on a local Wan backbone."""
    from dimo_engine.pipelines import create_random_pipeline, load_pipeline

    if config.pretrained:
        pipe = load_pipeline(config.pretrained, "cpu", torch.float32)
    else:
        pipe = create_random_pipeline(seed=config.seed, preset=config.preset)
    if config.wan_path:
        from diffusers import AutoencoderKLWan

        from dimo_engine.models.transformer_dimo import DiMoTransformer3DModel

        # Wan's own VAE comes with its backbone: the latent space must be the one the DiT was trained on.
        pipe.register_modules(vae=AutoencoderKLWan.from_pretrained(Path(config.wan_path) / "vae", local_files_only=True))
        new_entries = {k: pipe.transformer.config[k] for k in ("motion_dim", "motion_every_n_blocks", "temporal_factor", "camera_unshuffle", "null_text_length")}
        pipe.register_modules(transformer=DiMoTransformer3DModel.from_wan(Path(config.wan_path) / "transformer", **new_entries))
    if config.control != "none":
        from training.baselines import with_control_branch

        pipe.register_modules(transformer=with_control_branch(pipe.transformer, config.control))
    return pipe


class DiMoTrainingModel(nn.Module):
    """The trained parts in one module (so DDP/FSDP wrap them together): motion encoders, their pose heads, the DiT."""

    def __init__(self, transformer, body_encoder, hand_encoder):
        super().__init__()
        self.transformer, self.body_encoder, self.hand_encoder = transformer, body_encoder, hand_encoder

    def forward(self, driving_frames, hand_boxes, noisy, timesteps, target_rays, reference_latents, reference_rays,
                drop_motion, with_pose_heads: bool, control_maps=None):
        from dimo_engine.models.motion_encoder import encode_motion_tokens

        # The heads run only while their loss weight is above 0; afterwards they cost nothing.
        body, hands, body_pose, hand_pose = encode_motion_tokens(
            self.body_encoder, self.hand_encoder, driving_frames, hand_boxes, with_pose=with_pose_heads)
        motion_tokens = self.transformer.drop_motion(torch.cat([body, hands], dim=2), drop_motion)
        velocity = self.transformer(
            noisy, timesteps, motion_tokens=motion_tokens, camera_rays=target_rays,
            reference_latents=reference_latents, reference_rays=reference_rays, control_maps=control_maps,
        ).sample
        return velocity, body_pose, hand_pose


NEW_LAYER_PREFIXES = ("motion_", "null_", "camera_embedding", "control_embedding")


def select_trainable(model: DiMoTrainingModel, config: TrainConfig) -> list[nn.Parameter]:
    """Set requires_grad per `config.trainable`; encoders and heads always train, the DiT fully or only its new layers."""
    for parameter in model.parameters():
        parameter.requires_grad_(config.trainable == "all")
    for encoder in (model.body_encoder, model.hand_encoder):
        encoder.requires_grad_(True)
    if config.trainable != "all":
        for name, parameter in model.transformer.named_parameters():
            if name.startswith(NEW_LAYER_PREFIXES):
                parameter.requires_grad_(True)
        if config.trainable == "new+blocks" and config.trainable_blocks > 0:
            for block in model.transformer.blocks[-config.trainable_blocks:]:
                block.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


# -- data ----------------------------------------------------------------------------------------------------


def build_dataset(config: TrainConfig, pipe, person_masks: bool = False) -> ViewPairDataset:
    """The training pairs of `config`; with the person masks when the loss weighs the person or `person_masks`."""
    spatial = getattr(pipe.vae.config, "scale_factor_spatial", 8)  # pixels per latent cell
    unshuffle = pipe.transformer.config.camera_unshuffle
    from dimo_engine.augmentation import DrivingAugmentation

    augmentation = DrivingAugmentation() if config.augment_driving else None
    return ViewPairDataset(
        ClipDataset(config.dataset, config.split),
        num_frames=config.num_frames, height=config.height, width=config.width,
        ray_height=config.height // spatial * unshuffle, ray_width=config.width // spatial * unshuffle,
        ratios=config.pair_ratios, window_stride=config.window_stride, seed=config.seed,
        augmentation=augmentation, latent_cache=config.use_latent_cache, cache_tag=vae_cache_tag(pipe.vae),
        person_masks=person_masks or config.person_loss_weight > 0,
    )


def step_generator(config: TrainConfig, first_sample: int) -> torch.Generator:
    """The RNG of one micro-batch, seeded by its first sample number: noise, timesteps and CFG dropout repeat on resume."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + int(first_sample))


def target_latents(batch: dict, vae, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 of the targets and of the reference (B, C, T, h, w), from the cache when the batch has it, else the VAE."""
    if "target_latent_mean" in batch:
        target = batch["target_latent_mean"], batch["target_latent_std"]
        reference = batch["reference_latent_mean"], batch["reference_latent_std"]
    else:
        target = encode_latent_distribution(vae, batch["target_frames"])
        reference = encode_latent_distribution(vae, batch["reference_image"][:, None])
    return sample_latents(*target, generator), sample_latents(*reference, generator)


# -- checkpoints ---------------------------------------------------------------------------------------------


def latest_checkpoint(output_dir: Path) -> tuple[int, Path] | None:
    found = [(int(m.group(1)), p) for p in (output_dir / "checkpoints").glob("step_*") if (m := CHECKPOINT_PATTERN.match(p.name))]
    return max(found) if found else None


def save_checkpoint(accelerator: Accelerator, output_dir: Path, step: int, keep: int) -> None:
    """save_state into a temporary folder, renamed when complete; keeps the newest `keep` checkpoints."""
    folder = output_dir / "checkpoints" / f"step_{step:07d}"
    partial = folder.with_name(f".{folder.name}.partial")
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        replace_folder(partial, folder)
        old = sorted((int(m.group(1)), p) for p in folder.parent.glob("step_*") if (m := CHECKPOINT_PATTERN.match(p.name)))
        for _, path in old[:-keep] if keep > 0 else []:
            shutil.rmtree(path)
    accelerator.wait_for_everyone()


def export_pipeline(pipe, model: DiMoTrainingModel, ema: EMAModel | None, folder: Path) -> Path:
    """Write the trained (EMA) weights as a DiMoPipeline folder, atomically; the live weights are left as they were."""
    from dimo_engine.pipelines import save_pipeline

    trained = [p for p in model.parameters() if p.requires_grad]
    if ema is not None:
        ema.store(trained)
        ema.copy_to(trained)
    try:
        pipe.register_modules(transformer=model.transformer, body_encoder=model.body_encoder,
                              hand_encoder=model.hand_encoder)
        return save_pipeline(pipe, folder)
    finally:
        if ema is not None:
            ema.restore(trained)


def checkpoint_pipeline_hook(accelerator: Accelerator, pipe, ema: EMAModel | None):
    """accelerate's save_state pre-hook (as diffusers' training examples): every checkpoint folder also holds
    `pipeline/`, the DiMoPipeline at that step (EMA weights when EMA is on), which `dimo generate --model
    CHECKPOINT/pipeline` loads. Its keypoint locator is the one training started with (the locator trains after
    the loop; only the final export has it trained). `load_state` reads accelerate's own files and ignores it."""

    def save_pipeline_folder(models, weights, output_dir):
        if accelerator.is_main_process:
            export_pipeline(pipe, accelerator.unwrap_model(models[0]), ema, Path(output_dir) / CHECKPOINT_PIPELINE)

    return save_pipeline_folder


# -- metrics -------------------------------------------------------------------------------------------------


class MetricsLog:
    """metrics.jsonl in the output folder (and TensorBoard through accelerate when it is installed); main process only."""

    def __init__(self, accelerator: Accelerator, output_dir: Path, resume_step: int, config: TrainConfig):
        self.accelerator = accelerator
        self.path = output_dir / "metrics.jsonl"
        if accelerator.is_main_process and self.path.exists():
            # A resumed run rewrites what came after its checkpoint.
            kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.tensorboard = config.tensorboard and importlib.util.find_spec("tensorboard") is not None
        if self.tensorboard:
            accelerator.init_trackers("dimo", config={k: v for k, v in config_as_dict(config).items() if isinstance(v, (int, float, str, bool))})

    def log(self, values: dict, step: int) -> None:
        if self.tensorboard:
            self.accelerator.log(values, step=step)
        if self.accelerator.is_main_process:
            with self.path.open("a") as stream:
                stream.write(json.dumps({"step": step, **values}) + "\n")


# -- the loop ------------------------------------------------------------------------------------------------


def train(config: TrainConfig, resume: bool = False) -> dict:
    """Train per `config`; returns a summary (final step, last loss, samples/s, export folder)."""
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=config.cpu,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision if torch.cuda.is_available() or config.mixed_precision == "bf16" else "no",
        project_config=ProjectConfiguration(project_dir=str(output_dir)),
        log_with="tensorboard" if config.tensorboard and importlib.util.find_spec("tensorboard") else None,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],  # heads go silent after S
    )
    torch.manual_seed(config.seed)

    pipe = build_pipeline(config)
    pipe.vae.requires_grad_(False).eval()
    model = DiMoTrainingModel(pipe.transformer, pipe.body_encoder, pipe.hand_encoder)
    if config.gradient_checkpointing:
        model.transformer.enable_gradient_checkpointing()
    trainable = select_trainable(model, config)
    dataset = build_dataset(config, pipe)
    # What the saved pipelines (checkpoints and export) make: the trained clip length, size and fps.
    pipe.register_to_config(num_frames=config.num_frames, height=config.height, width=config.width,
                            fps=dataset.clips[0].fps)
    if accelerator.is_main_process:  # only once the inputs are known to be good
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.json").write_text(json.dumps(config_as_dict(config), indent=2))

    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
                                  weight_decay=config.weight_decay)
    warmup = max(config.lr_warmup_steps, 1)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    model, optimizer, lr_schedule = accelerator.prepare(model, optimizer, lr_schedule)
    ema = EMAModel(trainable, decay=config.ema_decay) if config.use_ema else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    accelerator.register_save_state_pre_hook(checkpoint_pipeline_hook(accelerator, pipe, ema))

    first_step = 0
    if resume and (found := latest_checkpoint(output_dir)):
        first_step, folder = found
        accelerator.load_state(str(folder))
        accelerator.print(f"resumed from {folder} at step {first_step}")
    metrics = MetricsLog(accelerator, output_dir, first_step, config)

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=config.batch_size, num_workers=config.num_workers,
        sampler=SampleNumbers(config.batch_size, config.gradient_accumulation_steps, accelerator.num_processes,
                              accelerator.process_index, first_step, config.max_steps),
    )
    vae = pipe.vae.to(accelerator.device)
    samples_per_step = config.batch_size * config.gradient_accumulation_steps * accelerator.num_processes
    progress = tqdm(total=config.max_steps, initial=first_step, desc="training", unit="step",
                    disable=not accelerator.is_local_main_process)
    step, micro, last, summary_loss = first_step, 0, {}, {}
    step_times = collections.deque(maxlen=20)  # samples/s over recent steps, not start-up
    step_started = time.perf_counter()
    model.train()
    for batch in loader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        generator = step_generator(config, int(batch["sample"][0]))
        aux_weight = annealed_weight(step, config.aux_weight, config.aux_hold_steps, config.aux_end_step, config.aux_schedule)
        with accelerator.accumulate(model):
            x0, reference = target_latents(batch, vae, generator)
            noise = torch.randn(x0.shape, generator=generator).to(x0.device)
            sigmas, timesteps = sample_flow_sigmas(
                pipe.scheduler, x0.shape[0], config.weighting_scheme, config.logit_mean, config.logit_std,
                config.mode_scale, generator=generator)
            drop = ~motion_keep_mask(x0.shape[0], config.motion_dropout, generator).to(x0.device)
            control = None
            if config.control != "none":  # the baselines' control maps, rebuilt from each sample's pair
                from training.baselines import batch_control_maps

                control = batch_control_maps(config.control, dataset, batch, config.seed).to(x0.device)
            with accelerator.autocast():
                velocity, body_pose, hand_pose = model(
                    batch["driving_frames"], batch["hand_boxes"], noisy_latents(x0, noise, sigmas.to(x0.device)),
                    timesteps.to(x0.device), batch["target_rays"], reference, batch["reference_rays"], drop,
                    with_pose_heads=aux_weight > 0, control_maps=control,
                )
            cell_weights = None
            if config.person_loss_weight > 0:
                cell_weights = person_cell_weights(batch["target_mask"], x0.shape, config.person_loss_weight,
                                                   pipe.vae_scale_factor_temporal)
            flow_loss = flow_matching_loss(velocity, x0, noise, sigmas.to(x0.device), config.loss_weighting, cell_weights)
            loss, aux_loss = flow_loss, torch.zeros((), device=x0.device)
            if aux_weight > 0:
                from dimo_engine.models.motion_encoder import body_pose_targets, hand_pose_targets

                body_target = body_pose_targets(batch["global_orient"], batch["body_pose"])  # (B, F, 22, 6)
                hand_target = hand_pose_targets(batch["left_hand_pose"], batch["right_hand_pose"])  # (B, F, 2, 15, 6)
                aux_loss = geometric_pose_loss(body_pose[:, :, 0], body_target) + config.hand_aux_weight * geometric_pose_loss(hand_pose, hand_target)
                loss = loss + aux_weight * aux_loss
            accelerator.backward(loss)
            grad_norm = None
            if accelerator.sync_gradients and config.max_grad_norm > 0:
                grad_norm = accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            lr_schedule.step()
            optimizer.zero_grad(set_to_none=True)

        micro += 1
        for key, value in (("loss", loss), ("flow_loss", flow_loss), ("aux_loss", aux_loss)):
            last[key] = last.get(key, 0.0) + accelerator.reduce(value.detach(), "mean").item() / config.gradient_accumulation_steps
        if not accelerator.sync_gradients:
            continue
        step, micro = step + 1, 0
        if ema is not None:
            ema.step(trainable)
        if step > first_step + 1 or config.max_steps - first_step == 1:  # the first step pays for start-up
            step_times.append(time.perf_counter() - step_started)
        step_started = time.perf_counter()
        samples_per_s = samples_per_step * len(step_times) / sum(step_times) if step_times else 0.0
        progress.update(1)
        progress.set_postfix(loss=f"{last['loss']:.4f}", samples_per_s=f"{samples_per_s:.2f}")
        if step % config.log_every == 0 or step == config.max_steps:
            metrics.log({**last, "aux_weight": aux_weight, "lr": lr_schedule.get_last_lr()[0],
                         "grad_norm": float(grad_norm) if grad_norm is not None else None,
                         "samples_per_s": samples_per_s}, step)
        summary_loss, last = last, {}
        if config.checkpoint_every > 0 and (step % config.checkpoint_every == 0 or step == config.max_steps):
            save_checkpoint(accelerator, output_dir, step, config.checkpoints_total_limit)
    progress.close()

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    checksum = torch.stack([p.detach().double().sum() for p in unwrapped.parameters()]).sum().reshape(1).to(accelerator.device)
    checksums = accelerator.gather(checksum).tolist()
    summary = {"step": step, "loss": summary_loss.get("loss") if step > first_step else None,
               "samples_per_s": samples_per_step * len(step_times) / sum(step_times) if step_times else None,
               "rank_weight_checksums": checksums, "pipeline": None}
    if config.locator_steps > 0:
        from training.train_locator import train_keypoint_locator

        locator, locator_losses = train_keypoint_locator(pipe, dataset.clips, config, accelerator)
        pipe.register_modules(keypoint_locator=locator)
        summary["locator_loss_first_last"] = [locator_losses[0], locator_losses[-1]]
        metrics.log({"locator_loss": locator_losses[-1]}, step)
    if config.export and accelerator.is_main_process:
        summary["pipeline"] = str(export_pipeline(pipe, unwrapped, ema, output_dir / "pipeline"))
    if accelerator.is_main_process:
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()  # no rank tears the process group down while another still writes
    # DDP's reducer must go while its process group lives: left to a later garbage collection, gloo can hang.
    del model, optimizer, lr_schedule, unwrapped
    accelerator.free_memory()
    gc.collect()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


# -- command line (also `dimo train`) ------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.config import FIELDS

    parser.add_argument("--config", default="tiny-cpu", help="a config of training/configs (tiny-cpu, wan-1.3b) or a .toml path")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config field")
    for name, field in FIELDS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=f"override_{name}", default=None, metavar=type(field.default).__name__.upper(),
                            help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = parse_set_overrides(args.set)
    overrides.update({key[len("override_"):]: value for key, value in vars(args).items() if key.startswith("override_") and value is not None})
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    # `kill -USR1 <pid>` prints every thread's stack: the first thing to look at when a multi-process run stalls.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    parser = argparse.ArgumentParser(description="Train DiMo on rendered clips.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    summary = train(config_from_args(args), resume=args.resume)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
