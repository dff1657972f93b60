"""The cross-view benchmark: DiMo and its baselines re-enact held-out test clips from the driving view, novel
still views and moving cameras, and are scored against the renders of the same motion from those cameras.

Test clips come from `dimo render-clips --split test --layout benchmark` (unseen motions and appearances; views
laid out by `blender_addon.core.clip_views.benchmark_views`). Per clip the reference image is the
character at frame 0 from the still front `reference` view; each target view is generated from the driving
view's first `num_frames` frames and compared with its ground truth:

- PSNR and SSIM (torchmetrics) of the frames at the model's resolution;
- silhouette IoU: the generated frame's foreground — pixels that differ from the clip's background plate (the
  set rendered without the person from the same camera, written by the renderer) — against the rendered
  person mask;
- 2D joint error in pixels: one keypoint locator (the evaluator, the same for every method) on the generated
  frames against the ground-truth 2D body joints visible in the target view.

The data flow: `benchmark_targets` and `target_truth` (what is scored) -> `generate_target` (each method's
re-enactment) -> `score` (the metrics of training/bench_metrics.py) -> `run_benchmark` (every method on every
target; results.json, MP4s, the contact sheet) -> training/bench_report.py (table and bar check).
`dimo bench-views` (training/commands/bench_views.py) is the command line.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from blender_addon.core.atomic_io import write_json_atomic
from dimo_engine.errors import InputError
from training.baselines import NUM_BODY_JOINTS, control_maps
from training.bench_metrics import METRICS, foreground_masks, joint_error, mean_of, psnr, silhouette_iou, ssim

TARGET_KINDS = ("driving", "novel_45", "novel_90", "novel_180", "elevation", "moving")


# -- test targets --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchTarget:
    """One scored generation: a test clip seen from one of its target views."""

    clip_index: int
    clip_id: str
    view: str
    kind: str  # one of TARGET_KINDS


def benchmark_targets(clips) -> list[BenchTarget]:
    """Every target view of the benchmark clips, in clip then manifest order."""
    targets = []
    for clip_index, clip in enumerate(clips):
        if "reference" not in clip.views or not any("bench_target" in v.info for v in clip.views.values()):
            raise InputError(f"{clip.path} is not a benchmark clip (no reference view or bench targets); render the "
                             f"test set with `dimo render-clips --split test --layout benchmark`.")
        for view in clip.views.values():
            if view.info.get("bench_target") in TARGET_KINDS:
                targets.append(BenchTarget(clip_index, clip.clip_id, view.name, view.info["bench_target"]))
    return targets


def _resized(frames_uint8: np.ndarray, height: int, width: int, mode: str = "bilinear") -> torch.Tensor:
    """uint8 `(F, H0, W0, C)` -> float `(F, C, height, width)` in [0, 1]."""
    frames = torch.from_numpy(np.ascontiguousarray(frames_uint8)).permute(0, 3, 1, 2).float() / 255.0
    if frames.shape[-2:] != (height, width):
        frames = F.interpolate(frames, size=(height, width), mode=mode, antialias=mode == "bilinear").clamp(0, 1)
    return frames


@dataclasses.dataclass
class TargetTruth:
    """Ground truth of a target at the model's size: frames, person masks, background plates, 2D body joints."""

    frames: torch.Tensor  # (F, 3, H, W)
    masks: torch.Tensor  # (F, H, W) bool
    backgrounds: torch.Tensor  # (F, 3, H, W)
    joints2d: torch.Tensor  # (F, 22, 2) pixels at the model's size
    visible: torch.Tensor  # (F, 22) bool


def target_truth(clip, view_name: str, indices: np.ndarray, height: int, width: int) -> TargetTruth:
    view = clip.views[view_name]
    rgba = view.frames(indices)
    scale = torch.tensor([width / clip.width, height / clip.height])
    annotations = view.annotations
    return TargetTruth(
        frames=_resized(rgba[..., :3], height, width),
        masks=_resized(rgba[..., 3:], height, width)[:, 0] > 0.5,
        backgrounds=_resized(view.backgrounds(indices), height, width),
        joints2d=torch.from_numpy(annotations["joints2d"][indices, :NUM_BODY_JOINTS]).float() * scale,
        visible=torch.from_numpy(annotations["joints_visible"][indices, :NUM_BODY_JOINTS]).bool(),
    )


def score(generated: torch.Tensor, truth: TargetTruth, locator) -> dict[str, float]:
    """The four metrics of one generated clip `(F, 3, H, W)` against its ground truth."""
    with torch.no_grad():
        located, _ = locator.locate(generated.to(locator.device, locator.dtype))
    return {
        "psnr": psnr(generated, truth.frames),
        "ssim": ssim(generated, truth.frames),
        "iou": silhouette_iou(foreground_masks(generated, truth.backgrounds), truth.masks),
        "joint_error_px": joint_error(located[:, :NUM_BODY_JOINTS].cpu(), truth.joints2d, truth.visible),
    }


# -- generation ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchSettings:
    num_inference_steps: int = 10
    motion_guidance_scale: float = 2.0
    seed: int = 0


def control_kind(pipe) -> str:
    """"none" for DiMo; a baseline's control (training.baselines.CONTROL_KINDS) from its transformer config."""
    config = pipe.transformer.config
    return config.get("control_kind", "none") if config.get("control_channels", 0) else "none"


def generate_target(pipe, clip, target: BenchTarget, settings: BenchSettings) -> torch.Tensor:
    """Re-enact the clip's driving view with its reference character from the target view -> `(F, 3, H, W)`."""
    from training.pairs import view_pixels

    cfg = pipe.config
    num_frames, height, width = int(cfg.num_frames), int(cfg.height), int(cfg.width)
    if clip.num_frames < num_frames:
        raise InputError(f"{clip.path} has {clip.num_frames} frames but the model makes {num_frames}; render the test "
                         f"set with --frames {num_frames} or more.")
    indices = np.arange(num_frames)
    driving = clip.driving_view
    scale = torch.tensor([width / clip.width, height / clip.height] * 2)
    hand_boxes = torch.from_numpy(driving.annotations["hand_boxes"][indices]).float() * scale  # (F, 2, 4)
    reference = clip.views["reference"]
    target_camera = clip.views[target.view].camera.take(indices)
    kind = control_kind(pipe)
    maps = None
    if kind != "none":
        ray_size = (height // pipe.vae_scale_factor_spatial * pipe.transformer.config.camera_unshuffle,
                    width // pipe.vae_scale_factor_spatial * pipe.transformer.config.camera_unshuffle)
        maps = control_maps(kind, clip, driving.name, target_camera, indices, ray_size, seed=settings.seed)[None]
    motion_inputs = {"driving_frames": view_pixels(driving, indices, height, width), "hand_boxes": hand_boxes}
    guidance = settings.motion_guidance_scale
    if maps is not None:
        # Baselines are trained on their control maps alone (the null motion tokens throughout), so they are
        # sampled that way too; guidance on motion would compare null with null.
        from dimo_engine.pipelines import MotionTokens

        null = pipe.transformer.null_motion(1, num_frames)  # (1, F, 1, motion_dim)
        motion_inputs, guidance = {"motion": MotionTokens(null, null[:, :, :0])}, 1.0
    output = pipe(
        reference_image=reference.frames([0])[0][..., :3],
        **motion_inputs,
        target_cameras=target_camera,
        reference_camera=reference.camera.take([0]),
        num_inference_steps=settings.num_inference_steps,
        motion_guidance_scale=guidance,
        generator=torch.Generator().manual_seed(settings.seed),
        output_type="pt",
        control_maps=maps,
    )
    return output.frames[0].float().cpu().clamp(0, 1)  # (F, 3, H, W)


VAE_BOUND = "ground truth via VAE"  # the reference row of `run_benchmark(vae_bound=True)`


@torch.no_grad()
def vae_roundtrip(pipe, frames: torch.Tensor) -> torch.Tensor:
    """Ground-truth frames `(F, 3, H, W)` in [0, 1] through the pipeline's VAE (encode, posterior mode, decode):
    the best any method decoding with this VAE can score, so the table shows how much of a gap is the VAE's."""
    latents = pipe.encode_video_latents(frames[None])
    return ((pipe.decode_latents(latents)[0].float().cpu() + 1.0) / 2.0).clamp(0, 1).permute(1, 0, 2, 3)


# -- the benchmark -------------------------------------------------------------------------------------------


@dataclasses.dataclass
class BenchResult:
    """Per method and target: the metrics; `summary()` averages them per target kind."""

    methods: list[str]
    rows: list[dict]  # {"method", "clip_id", "view", "kind", metrics...}
    seconds: dict[str, float]

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        """method -> target kind -> metric -> mean (NaNs skipped), plus "n" (targets)."""
        table = {}
        for method in self.methods:
            table[method] = {}
            for kind in TARGET_KINDS:
                rows = [row for row in self.rows if row["method"] == method and row["kind"] == kind]
                if not rows:
                    continue
                table[method][kind] = {**{m: mean_of([row[m] for row in rows]) for m in METRICS}, "n": len(rows)}
        return table


def run_benchmark(methods: dict, clips, locator, settings: BenchSettings, out_dir, num_examples: int = 2,
                  example_kinds=("novel_90", "moving"), log=print, vae_bound: bool = False) -> BenchResult:
    """Score every method (name -> DiMoPipeline) on every benchmark target of `clips`; write side-by-side MP4s
    and a contact sheet of the first `num_examples` clips' `example_kinds` targets into `out_dir`.
    `vae_bound` adds the row `VAE_BOUND`: the ground truth through the first method's VAE (`vae_roundtrip`)."""
    from dimo_engine.video_io import write_video

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = benchmark_targets(clips)
    sizes = {(int(p.config.num_frames), int(p.config.height), int(p.config.width)) for p in methods.values()}
    if len(sizes) != 1:
        raise InputError(f"The models make videos of different sizes {sorted(sizes)}; compare models of one size.")
    num_frames, height, width = sizes.pop()
    generators = {name: (lambda clip, target, truth, pipe=pipe: generate_target(pipe, clip, target, settings))
                  for name, pipe in methods.items()}
    if vae_bound:
        first = next(iter(methods.values()))
        generators[VAE_BOUND] = lambda clip, target, truth: vae_roundtrip(first, truth.frames)
    rows, seconds, examples = [], {name: 0.0 for name in generators}, []
    for target in targets:
        clip = clips[target.clip_index]
        indices = np.arange(num_frames)
        truth = target_truth(clip, target.view, indices, height, width)
        keep = target.clip_index < num_examples and target.kind in example_kinds
        generated_by_method = {}
        for name, generate in generators.items():
            started = time.perf_counter()
            generated = generate(clip, target, truth)
            seconds[name] += time.perf_counter() - started
            metrics = score(generated, truth, locator)
            rows.append({"method": name, "clip_id": target.clip_id, "view": target.view, "kind": target.kind, **metrics})
            log(f"{name:>16s} {target.clip_id} {target.view:<22s} " + " ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
            if keep:
                generated_by_method[name] = generated
        if keep:
            from training.pairs import view_pixels

            driving = view_pixels(clip.driving_view, indices, height, width)
            panels = [("driving", driving), ("ground truth", truth.frames), *generated_by_method.items()]
            examples.append((target, panels))
            strip = torch.cat([frames for _, frames in panels], dim=-1)  # (F, 3, H, W * panels)
            name = f"{target.clip_id.replace('/', '_')}_{target.view}.mp4"
            write_video(strip.permute(0, 2, 3, 1).numpy(), out_dir / name, fps=clip.fps)
    if examples:
        write_contact_sheet(examples, out_dir / "contact_sheet.png")
    result = BenchResult(list(generators), rows, seconds)
    write_json_atomic(out_dir / "results.json", {"rows": rows, "summary": result.summary(), "seconds": seconds}, default=float)
    return result


def write_contact_sheet(examples, path, frames_per_row: int = 3) -> Path:
    """A PNG with one block per example target: columns driving | ground truth | each method, rows a few frames."""
    from PIL import Image, ImageDraw

    from dimo_engine.video_io import to_uint8, write_png

    label_height = 14
    blocks = []
    for target, panels in examples:
        count = panels[0][1].shape[0]
        chosen = np.unique(np.linspace(0, count - 1, frames_per_row).round().astype(int))
        height, width = panels[0][1].shape[-2:]
        block = Image.new("RGB", (width * len(panels), label_height * 2 + height * len(chosen)), (25, 25, 25))
        draw = ImageDraw.Draw(block)
        draw.text((2, 1), f"{target.clip_id} {target.view}", fill=(235, 235, 235))
        for column, (label, frames) in enumerate(panels):
            draw.text((column * width + 2, label_height + 1), label[: max(width // 6, 4)], fill=(200, 200, 120))
            for row, frame_index in enumerate(chosen):
                image = to_uint8(frames[frame_index].permute(1, 2, 0).numpy())
                block.paste(Image.fromarray(image), (column * width, label_height * 2 + row * height))
        blocks.append(block)
    sheet = Image.new("RGB", (max(b.width for b in blocks), sum(b.height for b in blocks)), (25, 25, 25))
    top = 0
    for block in blocks:
        sheet.paste(block, (0, top))
        top += block.height
    return write_png(np.asarray(sheet), path)
