"""The character pipeline's benchmark: DiMo against its explicit-control baselines and its ablations, on held-out
test clips (rendered with `--layout benchmark`), per target kind, with 95 % bootstrap intervals over clips.

Every model is a `DiMoCharacterPipeline` folder; its config's `motion_signal` says how it gets its motion: "dimo" (DiMo
and its ablations) reads the driving video (`encode_driving`, as `dimo generate` does); the baselines are given
joints (`motion_for`): "pose2d" the driving view's true 2D joints (the renderer's annotations), "noisy3d" the true 3D
joints with `training.baselines.noisy_reconstruction`'s noise. All are then sampled by the same call (`reenact`).

Per target (`score_target`), from the generated RGBA layer:
- silhouette IoU of the generated alpha against the rendered mask (`evaluate_character.silhouette_iou`), and the
  background-plate IoU of the layer composited over the plate (`bench_metrics.foreground_masks`);
- PSNR and SSIM (torchmetrics, `bench_metrics`) over the box the person covers in the clip, over the plain grey;
- 2D joint error from one keypoint locator for every method (`load_locator`: the shipped default's body encoder
  reading the joints from the person's crop, cut around the layer's alpha), next to that locator's own error on the
  ground truth, and the error of the joints the layer is drawn from (`motion_joint_pixels`);
- alpha flicker, generated over the ground truth's (`evaluate_character.alpha_flicker`).
Per clip, the 3D pose error of the motion's anchors where a method has them (DiMo: the encoders' reading; noisy3d:
its noisy joints; pose2d has none).

`python -m training.compare_character --model dimo=PATH --model pose2d=PATH --model noisy3d=PATH [--model NAME=PATH
...] --test data/test_clips --out runs/compare.json --sheet docs/images/benchmark_character.png --videos docs/videos`
prints the tables (markdown) and writes the rows, intervals and effects as JSON. Models can be scored in separate runs
(processes side by side, or sessions; a run of baselines alone writes scores only) and reported together:
`python -m training.compare_character --merge runs/a.json --merge runs/b.json --out runs/compare.json`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from blender_addon.core.atomic_io import write_json_atomic
from dimo_engine.errors import InputError
from training.bench_metrics import foreground_masks, joint_error, mean_of, psnr, ssim
from training.bench_metrics import silhouette_iou as mask_iou
from training.bench_report import (
    DRIVING_TOLERANCE,
    WIDE_VIEW_GAIN,
    beats_baseline,
    driving_view_close,
    relative_gain,
    wide_view_bar_met,
)
from training.baselines import NUM_BODY_JOINTS, noisy_reconstruction
from training.benchmark import TARGET_KINDS, BenchTarget, write_contact_sheet
from training.evaluate_character import (
    NOVEL_WIDE,
    alpha_flicker,
    benchmark_clips,
    layer_uint8,
    located_joint_error,
    located_joints,
    person_box,
    pose_errors_mm,
    silhouette_iou,
)

DEFAULT_LOCATOR = Path(__file__).resolve().parents[1] / "dimo_engine" / "weights" / "default"
# Target kinds, then the aggregates the bar reads: novel views >= 90 degrees, and every target but the driving view.
AGGREGATES = {"novel_>=90": NOVEL_WIDE, "novel_and_moving": tuple(k for k in TARGET_KINDS if k != "driving")}
GROUPS = (*TARGET_KINDS, *AGGREGATES)
METRICS = ("iou", "plate_iou", "psnr", "ssim", "joint_error_px", "motion_joint_error_px", "flicker_ratio")
LOWER_IS_BETTER = {"joint_error_px", "motion_joint_error_px"}
EXAMPLE_KINDS = ("novel_90", "moving")
NOISE_SEED_STRIDE = 1_000_003  # noisy3d's reconstruction noise of clip i: seed * stride + i


# ---- one target ----------------------------------------------------------------------------------------------


def model_indices(pipe, clip) -> np.ndarray:
    """The clip's frames at the model's fps, the frames a target is generated and scored on."""
    from dimo_engine.video_io import resample_indices

    return resample_indices(clip.num_frames, clip.fps, float(pipe.config.fps))


def motion_for(pipe, clip, clip_index: int, seed: int = 0):
    """The motion a model is given for a clip: DiMo reads the driving video; the baselines get their joints at the
    model's fps (noisy3d: `noisy_reconstruction` from the driving camera, seeded per clip; pose2d: the driving view's
    annotated 2D joints, view-locked)."""
    from dimo_engine.character_layer import view_locked_points
    from dimo_engine.driving import encode_driving

    signal = pipe.config.motion_signal
    if signal == "dimo":
        return encode_driving(pipe, clip.driving_view.frames(), clip.fps)
    indices = model_indices(pipe, clip)
    driving = clip.driving_view
    if signal == "noisy3d":
        centres = driving.camera.take(indices).centers
        joints = noisy_reconstruction(clip.motion["joints"][indices], centres, seed * NOISE_SEED_STRIDE + clip_index)
        return pipe.baseline_motion(torch.from_numpy(joints).float())
    joints_2d = torch.from_numpy(driving.annotations["joints2d"][indices, :NUM_BODY_JOINTS]).float()
    return pipe.baseline_motion(view_locked_points(joints_2d, clip.width, clip.height))


def as_frames(images: np.ndarray) -> torch.Tensor:
    """Frames `(F, H, W, C)`, uint8 or floats in [0, 1] -> float `(F, C, H, W)` in [0, 1]."""
    frames = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return frames / 255.0 if images.dtype == np.uint8 else frames


def pose_errors(pipe, clip, motion) -> dict[str, float]:
    """The 3D pose error of a motion's anchors against the clip's true joints (mm), as placed and root-relative."""
    truth = torch.from_numpy(clip.motion["joints"][model_indices(pipe, clip), :NUM_BODY_JOINTS]).float()
    error, relative = pose_errors_mm(motion.body[0, :, :, -3:].float().cpu(), truth)
    return {"joint_error_mm": error, "root_relative_error_mm": relative}


def over_plate(layer: torch.Tensor, plates: torch.Tensor) -> torch.Tensor:
    """An RGBA layer `(F, 4, H, W)` over its background plates `(F, 3, H, W)` -> full frames `(F, 3, H, W)`: what a
    render of the same camera shows."""
    return layer[:, :3] * layer[:, 3:] + plates * (1 - layer[:, 3:])


def score_target(layer: np.ndarray, truth: np.ndarray, plates: np.ndarray, joints_2d: torch.Tensor,
                 visible: torch.Tensor, motion_pixels: torch.Tensor, locator) -> dict[str, float]:
    """The metrics of one generated layer `(F, H, W, 4)` in [0, 1] against the target's render uint8 `(F, H, W, 4)`,
    its background plates uint8 `(F, H, W, 3)`, true 2D body joints `(F, 22, 2)` and their visibility `(F, 22)`;
    `motion_pixels` `(F, 22, 2)`: where the motion put the joints in this camera (`motion_joint_pixels`); `locator`:
    RGBA uint8 frames -> joints (`load_locator`)."""
    from training.character_data import composite_over_background

    generated, rendered, backgrounds = as_frames(layer), as_frames(truth), as_frames(plates)
    true_alpha = rendered[:, 3]
    frames = over_plate(generated, backgrounds)
    rows, cols = person_box(true_alpha, min_side=11)  # SSIM's Gaussian window is 11 pixels
    generated_grey = composite_over_background(generated)[..., rows, cols]
    truth_grey = composite_over_background(rendered)[..., rows, cols]
    truth_flicker = alpha_flicker(true_alpha.numpy())
    return {
        "iou": silhouette_iou(generated[:, 3].numpy(), true_alpha.numpy()),
        "plate_iou": mask_iou(foreground_masks(frames, backgrounds), true_alpha > 0.5),
        "psnr": psnr(generated_grey, truth_grey),
        "ssim": ssim(generated_grey, truth_grey),
        "joint_error_px": located_joint_error(locator, layer_uint8(layer), joints_2d, visible),
        "motion_joint_error_px": joint_error(motion_pixels, joints_2d, visible),
        "flicker_ratio": alpha_flicker(generated[:, 3].numpy()) / truth_flicker if truth_flicker > 0 else math.nan,
    }


# ---- intervals over clips ------------------------------------------------------------------------------------


def bootstrap_interval(values, resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of per-clip values `(C,)` (NaNs left out) and its `level` percentile bootstrap interval: clips drawn
    with replacement `resamples` times (numpy, fixed `seed`). -> (mean, low, high); NaNs when no value."""
    values = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (resamples, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(values.mean()), float(low), float(high)


def clip_means(rows: list[dict], method: str | None, group: str, metric: str) -> dict[str, float]:
    """Per clip, the mean of `metric` over `method`'s targets (any method's: None) in `group` (a target kind or an
    AGGREGATES name)."""
    kinds = AGGREGATES.get(group, (group,))
    per_clip: dict[str, list[float]] = {}
    for row in rows:
        if row.get("method") == method and row["kind"] in kinds:
            per_clip.setdefault(row["clip_id"], []).append(row[metric])
    return {clip: mean_of(values) for clip, values in per_clip.items()}


def summarise(rows: list[dict], methods: list[str], seed: int = 0) -> dict:
    """method -> group -> metric -> [mean, low, high] over clips, plus "clips" and "targets"."""
    summary = {}
    for method in methods:
        summary[method] = {}
        for group in GROUPS:
            kinds = AGGREGATES.get(group, (group,))
            targets = [row for row in rows if row["method"] == method and row["kind"] in kinds]
            if not targets:
                continue
            figures = {metric: list(bootstrap_interval(clip_means(rows, method, group, metric).values(), seed=seed))
                       for metric in METRICS}
            summary[method][group] = {**figures, "clips": len({r["clip_id"] for r in targets}), "targets": len(targets)}
    return summary


def paired_effect(rows: list[dict], method: str, reference: str, group: str, metric: str,
                  seed: int = 0) -> list[float]:
    """`method` minus `reference` on the same clips: [mean, low, high] of the per-clip differences (bootstrap)."""
    ours, theirs = clip_means(rows, method, group, metric), clip_means(rows, reference, group, metric)
    return list(bootstrap_interval([ours[c] - theirs[c] for c in ours if c in theirs], seed=seed))


def pose3d_summary(pose_rows: list[dict], seed: int = 0) -> dict:
    """method -> {"joint_error_mm", "root_relative_error_mm"}: [mean, low, high] over clips."""
    methods = list(dict.fromkeys(row["method"] for row in pose_rows))
    return {method: {key: list(bootstrap_interval([r[key] for r in pose_rows if r["method"] == method], seed=seed))
                     for key in ("joint_error_mm", "root_relative_error_mm")} for method in methods}


# ---- the comparison ------------------------------------------------------------------------------------------


def load_locator(folder: Path):
    """The one keypoint locator every method is scored by: the body encoder of the character pipeline in `folder`
    (the shipped default by default), whose 2D head reads the 22 body joints from the person's crop cut around the
    alpha (`evaluate_character.located_joints`). -> RGBA uint8 frames `(F, H, W, 4)` -> joints `(F, 22, 2)` in pixels.
    At the crop's resolution it errs on the ground truth at 128 px by 1.4 px on the driving view and 3.8 px on novel
    views >= 90 degrees, where the full-frame `KeypointLocator` erred by 8-10 px, more than the bar's 6."""
    from dimo_engine.pipelines import DiMoCharacterPipeline, load_pipeline

    if not (Path(folder) / "model_index.json").is_file():
        raise InputError(f"--locator {folder}: no pipeline there (model_index.json is missing); give a trained "
                         f"character pipeline's folder, e.g. {DEFAULT_LOCATOR}.")
    pipe = load_pipeline(folder, device="cpu")
    if not isinstance(pipe, DiMoCharacterPipeline) or pipe.config.motion_signal != "dimo":
        raise InputError(f"--locator {folder}: not a DiMo character pipeline, so it has no body encoder to locate "
                         f"joints with; give e.g. {DEFAULT_LOCATOR}.")
    return partial(located_joints, pipe)


def compare(models: dict, clips: list, locator, steps: int | None = None, seed: int = 0, num_examples: int = 2,
            shown: list[str] | None = None, log=print) -> dict:
    """Every model (name -> pipeline) on every bench target of `clips`. Returns {"rows": per target and method,
    "pose3d": per clip and method where the motion has 3D anchors, "locator_floor": the locator on the ground truth
    (per target), "examples": [(BenchTarget, panels)] for the sheet and videos, "seconds": per method}."""
    from dimo_engine.reenact import GenerationSettings, conform_camera, reenact
    from training.pairs import view_pixels

    settings = GenerationSettings(num_inference_steps=steps, seed=seed)
    shown = list(models) if shown is None else shown
    rows, pose_rows, floor_rows, examples, seconds = [], [], [], [], {name: 0.0 for name in models}
    for clip_index, clip in enumerate(clips):
        reference = clip.views["reference"].frames([0])[0]
        motions = {}
        for name, pipe in models.items():
            motions[name] = motion_for(pipe, clip, clip_index, seed)
            if pipe.config.motion_signal != "pose2d":  # a 2D pose has no 3D joints to score
                pose_rows.append({"method": name, "clip_id": clip.clip_id, **pose_errors(pipe, clip, motions[name])})
        example_kinds = set(EXAMPLE_KINDS) if clip_index < num_examples else set()
        for view in clip.views.values():
            kind = view.info.get("bench_target")
            if kind not in TARGET_KINDS:
                continue
            panels = []
            for name, pipe in models.items():
                motion = motions[name]
                indices = model_indices(pipe, clip)
                camera = conform_camera(view.camera, motion.num_frames, float(pipe.config.fps))
                started = time.perf_counter()
                layer = reenact(pipe, reference, motion, [camera], settings=settings)[0]  # (F, H, W, 4)
                seconds[name] += time.perf_counter() - started
                truth, plates = view.frames(indices), view.backgrounds(indices)
                joints_2d = torch.from_numpy(view.annotations["joints2d"][indices, :NUM_BODY_JOINTS]).float()
                visible = torch.from_numpy(view.annotations["joints_visible"][indices, :NUM_BODY_JOINTS]).bool()
                motion_pixels = pipe.motion_joint_pixels(motion, camera)
                metrics = score_target(layer, truth, plates, joints_2d, visible, motion_pixels, locator)
                rows.append({"method": name, "clip_id": clip.clip_id, "view": view.name, "kind": kind, **metrics})
                figures = " ".join(f"{key}={value:.3f}" for key, value in metrics.items())
                log(f"{name:>16s} {clip.clip_id} {view.name:<22s} {figures}")
                if name == next(iter(models)):
                    floor_rows.append({"clip_id": clip.clip_id, "kind": kind,
                                       "joint_error_px": located_joint_error(locator, truth, joints_2d, visible)})
                if kind in example_kinds and name in shown:
                    panels.append((name, over_plate(as_frames(layer), as_frames(plates))))
            if kind in example_kinds:
                example_kinds.discard(kind)  # one view of each kind a clip
                indices = model_indices(next(iter(models.values())), clip)
                driving = view_pixels(clip.driving_view, indices, clip.height, clip.width)
                truth_frames = as_frames(view.frames(indices)[..., :3])
                target = BenchTarget(clip_index, clip.clip_id, view.name, kind)
                examples.append((target, [("driving", driving), ("ground truth", truth_frames), *panels]))
    return {"rows": rows, "pose3d": pose_rows, "locator_floor": floor_rows, "examples": examples, "seconds": seconds}


# ---- the report ----------------------------------------------------------------------------------------------


def _interval(figure: list[float], digits: int) -> str:
    mean, low, high = figure
    if math.isnan(mean):
        return "—"
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


TABLE_COLUMNS = (("iou", "silhouette IoU ↑", 3), ("plate_iou", "plate IoU ↑", 3), ("psnr", "PSNR box (dB) ↑", 2),
                 ("ssim", "SSIM box ↑", 3), ("joint_error_px", "joint error, locator (px) ↓", 2),
                 ("motion_joint_error_px", "joint error, motion (px) ↓", 2), ("flicker_ratio", "flicker / truth", 2))


def markdown_table(summary: dict, methods: list[str], locator_floor: dict | None = None) -> str:
    """Per target group and method: each metric's mean and 95 % interval over clips, and the clips scored."""
    header = "| target | method | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " | clips |"
    lines = [header, "|" + " --- |" * 2 + " ---: |" * (len(TABLE_COLUMNS) + 1)]
    for group in GROUPS:
        for method in methods:
            figures = summary.get(method, {}).get(group)
            if figures is None:
                continue
            cells = " | ".join(_interval(figures[key], digits) for key, _, digits in TABLE_COLUMNS)
            lines.append(f"| {group} | {method} | {cells} | {figures['clips']} |")
        if locator_floor and group in locator_floor and not math.isnan(locator_floor[group][0]):
            lines.append(f"| {group} | *ground truth (the locator's own error)* | | | | | "
                         f"{_interval(locator_floor[group], 2)} | | | |")
    return "\n".join(lines)


ABLATION_GROUPS = ("driving", "novel_>=90", "novel_and_moving")


def ablation_table(rows: list[dict], summary: dict, reference: str, ablations: list[str], seed: int = 0) -> str:
    """Per ablation: its silhouette IoU and locator joint error on the driving view, novel views >= 90 and all
    novel and moving targets, and its effect against `reference` on the same clips (paired, 95 % interval)."""
    lines = ["| ablation | target | silhouette IoU ↑ | effect on IoU | joint error (px) ↓ | effect on joint error |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for method in [reference, *ablations]:
        for group in ABLATION_GROUPS:
            figures = summary.get(method, {}).get(group)
            if figures is None:
                continue
            effects = ["(reference)"] * 2 if method == reference else [
                _interval(paired_effect(rows, method, reference, group, metric, seed), digits)
                for metric, digits in (("iou", 3), ("joint_error_px", 2))]
            lines.append(f"| {method} | {group} | {_interval(figures['iou'], 3)} | {effects[0]} | "
                         f"{_interval(figures['joint_error_px'], 2)} | {effects[1]} |")
    return "\n".join(lines)


def pose3d_table(pose: dict) -> str:
    lines = ["| method | 3D joint error (mm) ↓ | root-relative (mm) ↓ |", "| --- | ---: | ---: |"]
    for method, figures in pose.items():
        lines.append(f"| {method} | {_interval(figures['joint_error_mm'], 1)} | "
                     f"{_interval(figures['root_relative_error_mm'], 1)} |")
    return "\n".join(lines)


def bar_check(summary: dict, dimo: str, pose2d: str | None, noisy3d: str | None) -> list[str]:
    """Issue 14's bar as sentences, met or not, with the numbers (means over clips; the intervals are in the table):
    DiMo beats 2D pose by WIDE_VIEW_GAIN in IoU and joint error on novel views >= 90, is within DRIVING_TOLERANCE of
    it on the driving view (IoU, joint error, PSNR), and beats noisy 3D on all novel and moving targets."""
    def means(method, group):
        figures = summary[method][group]
        return {key: figures[key][0] for key in ("iou", "joint_error_px", "psnr")}

    lines = []
    if pose2d:
        ours, theirs = means(dimo, "novel_>=90"), means(pose2d, "novel_>=90")
        iou_gain = relative_gain(ours["iou"], theirs["iou"])
        error_gain = relative_gain(ours["joint_error_px"], theirs["joint_error_px"], lower_is_better=True)
        met = wide_view_bar_met(iou_gain, error_gain)
        lines.append(f"Novel views >= 90 degrees vs {pose2d}: IoU {ours['iou']:.3f} vs {theirs['iou']:.3f} "
                     f"({iou_gain:+.0%}), joint error {ours['joint_error_px']:.2f} vs {theirs['joint_error_px']:.2f} px "
                     f"({error_gain:+.0%} lower) — {'met' if met else 'NOT met'} (needs +{WIDE_VIEW_GAIN:.0%} on both).")
        ours, theirs = means(dimo, "driving"), means(pose2d, "driving")
        close = driving_view_close(ours, theirs)
        lines.append(f"Driving view vs {pose2d}: IoU {ours['iou']:.3f} vs {theirs['iou']:.3f}, joint error "
                     f"{ours['joint_error_px']:.2f} vs {theirs['joint_error_px']:.2f} px, PSNR {ours['psnr']:.2f} vs "
                     f"{theirs['psnr']:.2f} dB — {'' if close else 'NOT '}within {DRIVING_TOLERANCE:.0%}.")
    if noisy3d:
        ours, theirs = means(dimo, "novel_and_moving"), means(noisy3d, "novel_and_moving")
        beats = beats_baseline(ours["iou"], ours["joint_error_px"], theirs["iou"], theirs["joint_error_px"])
        lines.append(f"All novel and moving targets vs {noisy3d}: IoU {ours['iou']:.3f} vs {theirs['iou']:.3f}, joint "
                     f"error {ours['joint_error_px']:.2f} vs {theirs['joint_error_px']:.2f} px — "
                     f"{'beats it' if beats else 'does NOT beat it'}.")
    return lines


def write_examples(examples: list, sheet: Path | None, videos: Path | None, fps: float) -> list[Path]:
    """The contact sheet (`benchmark.write_contact_sheet`) and one side-by-side MP4 per example target."""
    from dimo_engine.video_io import write_video

    written = []
    if sheet is not None and examples:
        written.append(write_contact_sheet(examples, sheet))
    for target, panels in examples if videos is not None else []:
        strip = torch.cat([frames for _, frames in panels], dim=-1)  # (F, 3, H, W * panels)
        path = Path(videos) / f"{target.clip_id.replace('/', '_')}_{target.view}.mp4"
        path.parent.mkdir(parents=True, exist_ok=True)
        written.append(write_video(strip.permute(0, 2, 3, 1).numpy(), path, fps=fps))
    return written


def roles(signals: dict[str, str], reference: str | None) -> tuple[str, str | None, str | None, list[str]]:
    """(DiMo, the 2D-pose baseline, the noisy-3D baseline, the ablations) among the models, by their motion_signal
    (`signals`: name -> signal): the reference is the first DiMo model unless named; every other DiMo model is an
    ablation of it."""
    dimo_models = [name for name, signal in signals.items() if signal == "dimo"]
    reference = reference or (dimo_models[0] if dimo_models else None)
    if reference not in dimo_models:
        given = ", ".join(dimo_models) or "none"
        raise InputError(f"--reference {reference!r} is not one of the DiMo models given ({given}); give at least one "
                         f"--model whose motion_signal is dimo.")
    first = {signal: next((n for n, s in signals.items() if s == signal), None) for signal in ("pose2d", "noisy3d")}
    return reference, first["pose2d"], first["noisy3d"], [n for n in dimo_models if n != reference]


# What must agree for scores from separate runs to be merged into one report.
MERGE_KEYS = ("test", "clips", "steps", "seed", "locator")


def merge_scores(paths: list[Path]) -> dict:
    """The scores of earlier runs (their --out JSONs) as one: their settings must agree on MERGE_KEYS and their model
    names must differ. -> {"settings", "rows", "pose3d_rows", "locator_floor_rows"}, the first run's floor rows (the
    locator on the same ground truth). Lets each model be scored in its own process, or session, and reported once."""
    merged = {"settings": None, "rows": [], "pose3d_rows": [], "locator_floor_rows": None}
    for path in paths:
        try:
            run = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise InputError(f"--merge {path}: not a compare_character JSON ({error}).") from None
        if "locator_floor_rows" not in run:
            raise InputError(f"--merge {path}: it has no per-target scores to merge (written by an older version, or "
                             f"not by compare_character); score its models again.")
        settings = run["settings"]
        if merged["settings"] is None:
            merged["settings"] = {**settings, "models": dict(settings["models"])}
            merged["locator_floor_rows"] = run["locator_floor_rows"]
        else:
            differing = [key for key in MERGE_KEYS if settings.get(key) != merged["settings"].get(key)]
            if differing:
                raise InputError(f"--merge {path}: scored with other settings ({', '.join(differing)}) than "
                                 f"{paths[0]}; merge only runs on the same test clips, steps, seed and locator.")
            twice = sorted(set(settings["models"]) & set(merged["settings"]["models"]))
            if twice:
                raise InputError(f"--merge {path}: model {', '.join(twice)} is scored in two runs; give each once.")
            merged["settings"]["models"].update(settings["models"])
        merged["rows"] += run["rows"]
        merged["pose3d_rows"] += run["pose3d_rows"]
    return merged


def report(scores: dict, reference: str | None, seed: int = 0) -> tuple[list[str], dict]:
    """The tables and the bar (markdown lines) and the JSON's figures from `scores` ({"settings": with "models": name
    -> {"motion_signal"}, "rows", "pose3d_rows", "locator_floor_rows"}), for a fresh run and a merged one alike."""
    signals = {name: model["motion_signal"] for name, model in scores["settings"]["models"].items()}
    reference, pose2d, noisy3d, ablations = roles(signals, reference)
    rows, methods = scores["rows"], list(signals)
    summary = summarise(rows, methods, seed)
    floor = {group: list(bootstrap_interval(clip_means(scores["locator_floor_rows"], None, group,
                                                       "joint_error_px").values(), seed=seed)) for group in GROUPS}
    pose = pose3d_summary(scores["pose3d_rows"], seed)
    effects = {method: {group: {metric: paired_effect(rows, method, reference, group, metric, seed)
                                for metric in METRICS} for group in GROUPS}
               for method in methods if method != reference}
    bar = bar_check(summary, reference, pose2d, noisy3d)
    lines = [markdown_table(summary, [n for n in (reference, pose2d, noisy3d) if n], floor), "",
             ablation_table(rows, summary, reference, ablations, seed) if ablations else "", "",
             pose3d_table(pose), "", *bar]
    settings = {**scores["settings"], "reference": reference}
    return lines, {"settings": settings, "summary": summary, "effects": effects, "pose3d": pose,
                   "locator_floor": floor, "bar": bar}


def parse_models(items: list[str]) -> dict[str, Path]:
    models = {}
    for item in items:
        name, separator, path = item.partition("=")
        if not separator or not name or not path:
            raise InputError(f"--model {item!r}: give NAME=PATH, e.g. dimo=runs/character/pipeline.")
        if name in models:
            raise InputError(f"--model {name} is given twice; give each model its own name.")
        models[name] = Path(path)
    return models


def main(argv: list[str] | None = None) -> int:
    from dimo_engine.pipelines import DiMoCharacterPipeline, load_pipeline

    parser = argparse.ArgumentParser(prog="python -m training.compare_character", description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="a DiMoCharacterPipeline folder (DiMo, an ablation or a baseline); repeat")
    parser.add_argument("--merge", action="append", type=Path, default=[], metavar="JSON",
                        help="report from the scores of earlier runs (their --out) instead of scoring models; repeat")
    parser.add_argument("--reference", default=None, help="the DiMo model the bar and the ablations compare with")
    parser.add_argument("--test", default="data/test_clips", help="test clips rendered with --layout benchmark")
    parser.add_argument("--out", type=Path, default=Path("runs/compare.json"))
    parser.add_argument("--sheet", type=Path, default=None, help="contact sheet PNG of the example targets")
    parser.add_argument("--videos", type=Path, default=None, help="folder for side-by-side MP4s of the examples")
    parser.add_argument("--examples", type=int, default=2, help="clips whose novel_90 and moving targets are shown")
    parser.add_argument("--show", action="append", default=None, metavar="NAME",
                        help="models in the sheet and videos (default: DiMo and the baselines)")
    parser.add_argument("--locator", type=Path, default=DEFAULT_LOCATOR,
                        help="the character pipeline whose body encoder locates every method's joints")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the pipeline's, 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-clips", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        if bool(args.model) == bool(args.merge):
            raise InputError("give the models to score (--model NAME=PATH, repeated) or earlier runs' scores to "
                             "report together (--merge JSON, repeated), not both and not neither.")
        if args.merge:
            scores = merge_scores(args.merge)
            lines, figures = report(scores, args.reference, scores["settings"]["seed"])
            print("\n".join(lines))
            write_json_atomic(args.out, {**scores, **figures, "merged": [str(path) for path in args.merge]},
                              default=float)
            return 0
        paths = parse_models(args.model)
        models = {}
        for name, path in paths.items():
            pipe = load_pipeline(path, device="cpu")
            if not isinstance(pipe, DiMoCharacterPipeline):
                raise InputError(f"--model {name}={path} is not a character-layer pipeline (DiMoCharacterPipeline); "
                                 f"compare Wan-path models with `dimo bench-views`.")
            pipe.set_progress_bar_config(disable=True)
            models[name] = pipe
        signals = {name: pipe.config.motion_signal for name, pipe in models.items()}
        scored_alone = "dimo" not in signals.values() and not args.reference  # baselines only: scores to merge
        reference, pose2d, noisy3d, _ = (None, None, None, []) if scored_alone else roles(signals, args.reference)
        shown = args.show or [n for n in (reference, pose2d, noisy3d) if n]
        unknown = sorted(set(shown) - set(models))
        if unknown:
            raise InputError(f"--show {unknown}: not among the models given ({', '.join(models)}).")
        locator = load_locator(args.locator)
        clips = benchmark_clips(args.test, args.max_clips)
    except InputError as error:
        print(f"error: {error}")
        return 2
    result = compare(models, clips, locator, args.steps, args.seed, args.examples, shown)
    settings = {"test": str(args.test), "clips": len(clips), "steps": args.steps, "seed": args.seed,
                "locator": str(args.locator),
                "models": {n: {"path": str(p), "motion_signal": signals[n]} for n, p in paths.items()}}
    scores = {"settings": settings, "rows": result["rows"], "pose3d_rows": result["pose3d"],
              "locator_floor_rows": result["locator_floor"]}
    written = write_examples(result["examples"], args.sheet, args.videos, clips[0].fps)
    figures = {}
    if not scored_alone:
        lines, figures = report(scores, reference, args.seed)
        print("\n".join(lines))
    else:
        print(f"No DiMo model among these, so no tables: merge this run's scores ({args.out}) with a run that has one "
              f"(--merge).")
    write_json_atomic(args.out, {**scores, **figures, "seconds": result["seconds"],
                                 "written": [str(p) for p in written]}, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
