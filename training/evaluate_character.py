"""What the default model is measured by, on held-out test clips (rendered with `--layout benchmark`):

- `encoder_report`: the body encoder's joints in the character frame (from the driving frames alone, no driving
  camera) against the mean-pose baseline, and its front/back confusion rate;
- `layer_report`: the character layer through the same calls as `dimo generate` (`encode_driving` ->
  `reenact`), per target kind: silhouette IoU of the generated alpha against the rendered mask, 2D joint error of
  the motion the layer is drawn from (its anchors projected by the target camera), and the alpha's frame-to-frame
  flicker next to the ground truth's; plus a driving | ground truth | generated sheet.

`python -m training.evaluate_character --model PATH --test data/test_clips` prints both as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dimo_engine.clips import ClipDataset
from dimo_engine.models.anchored_motion_encoder import facing_error_deg

NOVEL_WIDE = ("novel_90", "novel_180")  # targets >= 90 degrees from the driving view


def _mean_pose(train_cache: str | None) -> torch.Tensor | None:
    if not train_cache or not Path(train_cache).is_file():
        return None
    clips = torch.load(train_cache, map_location="cpu", weights_only=False)["clips"]
    return torch.cat([c["joints"][:, :22] for c in clips]).mean(0)  # (22, 3) character frame


def silhouette_iou(predicted_alpha: np.ndarray, true_alpha: np.ndarray) -> float:
    """IoU of alpha > 0.5 masks over all frames `(F, H, W)` (floats in [0, 1])."""
    a, b = predicted_alpha > 0.5, true_alpha > 0.5
    return float((a & b).sum() / max((a | b).sum(), 1))


def alpha_flicker(alpha: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of an alpha sequence `(F, H, W)` inside the person's reach."""
    return float(np.abs(np.diff(alpha, axis=0)).mean())


def encoder_report(pipe, test_root, train_cache: str | None = None) -> dict:
    """Joint error (mm) of the encoder's character-frame anchors on each test clip's driving view."""
    from dimo_engine.driving import encode_driving

    mean_pose = _mean_pose(train_cache)
    errors, relative, baseline, confusion, confusion_all = [], [], [], [], []
    for clip in ClipDataset(test_root, "test"):
        view = clip.driving_view
        motion = encode_driving(pipe, view.frames(), clip.fps)
        anchors = motion.body[0, :, :, -3:].cpu()  # (F, 22, 3)
        truth = torch.from_numpy(clip.motion["joints"][:, :22]).float()
        errors.append((anchors - truth).norm(dim=-1).mean().item() * 1000)
        relative.append(((anchors - anchors[:, :1]) - (truth - truth[:, :1])).norm(dim=-1).mean().item() * 1000)
        if mean_pose is not None:
            baseline.append((mean_pose[None] - truth).norm(dim=-1).mean().item() * 1000)
        confusion.append((facing_error_deg(anchors, truth) > 90).float().mean().item())
        for other in clip.views.values():  # every test camera as the driving one: back views, 90 degrees, above
            seen = encode_driving(pipe, other.frames(), clip.fps).body[0, :, :, -3:].cpu()
            confusion_all.append((facing_error_deg(seen, truth) > 90).float().mean().item())
    report = {"clips": len(errors), "joint_error_mm": round(float(np.mean(errors)), 1),
              "root_relative_error_mm": round(float(np.mean(relative)), 1),
              "front_back_confusion": round(float(np.mean(confusion)), 3),
              "front_back_confusion_any_view": round(float(np.mean(confusion_all)), 3)}
    if baseline:
        report["mean_pose_error_mm"] = round(float(np.mean(baseline)), 1)
        report["ratio_to_mean_pose"] = round(report["joint_error_mm"] / report["mean_pose_error_mm"], 3)
    return report


def layer_report(pipe, test_root, steps: int | None = None, sheet: Path | None = None, max_clips: int = 0) -> dict:
    """Per target kind (driving, novel_45/90/180, elevation, moving) and for novel >= 90: the layer's figures."""
    from dimo_engine.camera import project_points
    from dimo_engine.driving import encode_driving
    from dimo_engine.generation import GenerationSettings, conform_camera, reenact

    per_kind: dict[str, dict[str, list[float]]] = {}
    sheet_rows = []
    clips = list(ClipDataset(test_root, "test"))
    clips = clips[:max_clips] if max_clips else clips
    for clip in clips:
        driving = clip.driving_view.frames()
        motion = encode_driving(pipe, driving, clip.fps)
        reference = clip.views["reference"].frames([0])[0]
        anchors = motion.body[0, :, :, -3:].cpu()
        for view in clip.views.values():
            kind = view.info.get("bench_target")
            if kind is None:
                continue
            camera = conform_camera(view.camera, motion.num_frames, float(pipe.config.fps))
            frames = reenact(pipe, reference, motion, [camera], settings=GenerationSettings(num_inference_steps=steps))[0]
            truth = view.frames()
            true_alpha = truth[..., 3].astype(np.float32) / 255.0
            uv, _ = project_points(anchors, torch.from_numpy(camera.K).float(),
                                   torch.from_numpy(camera.world_to_camera).float())
            joints_2d = torch.from_numpy(view.annotations["joints2d"][:, :22]).float()
            visible = torch.from_numpy(view.annotations["joints_visible"][:, :22])
            joint_error = (uv - joints_2d).norm(dim=-1)[visible].mean().item()
            figures = per_kind.setdefault(kind, {"iou": [], "joint_error_px": [], "flicker": [], "flicker_truth": []})
            figures["iou"].append(silhouette_iou(frames[..., 3], true_alpha))
            figures["joint_error_px"].append(joint_error)
            figures["flicker"].append(alpha_flicker(frames[..., 3]))
            figures["flicker_truth"].append(alpha_flicker(true_alpha))
            if sheet is not None and kind in ("novel_90", "moving") and len(sheet_rows) < 6:
                sheet_rows.append((f"{clip.clip_id} {view.name}", driving, truth, frames))
    summary = {kind: {k: round(float(np.mean(v)), 4) for k, v in figures.items()} for kind, figures in per_kind.items()}
    wide = [per_kind[k] for k in NOVEL_WIDE if k in per_kind]
    if wide:
        summary["novel_>=90"] = {k: round(float(np.mean(sum((f[k] for f in wide), []))), 4) for k in wide[0]}
    if sheet is not None and sheet_rows:
        write_sheet(sheet_rows, sheet)
    return summary


def write_sheet(rows, path: Path, frames=(0, 4, 8, 12, 16)) -> Path:
    """PNG: per row the driving, ground-truth and generated frames (layer over grey) at a few frame numbers."""
    from PIL import Image, ImageDraw

    def flat(image):
        image = np.asarray(image, dtype=np.float32)
        if image.max() > 1.5:
            image = image / 255.0
        if image.shape[-1] == 4:
            image = image[..., :3] * image[..., 3:] + 0.5 * (1 - image[..., 3:])
        return (image.clip(0, 1) * 255 + 0.5).astype(np.uint8)

    tiles = []
    for title, driving, truth, generated in rows:
        strip = [np.concatenate([flat(driving[min(f, len(driving) - 1)][..., :3]), flat(truth[f]), flat(generated[f])], 0)
                 for f in frames if f < len(generated)]
        row = np.concatenate(strip, axis=1)
        header = Image.new("RGB", (row.shape[1], 14), "white")
        ImageDraw.Draw(header).text((2, 1), f"{title}: driving / ground truth / DiMo at frames {frames}", fill="black")
        tiles.append(np.concatenate([np.asarray(header), row], 0))
    image = np.concatenate(tiles, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    from dimo_engine.pipelines import load_pipeline

    parser = argparse.ArgumentParser(prog="python -m training.evaluate_character", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped default model)")
    parser.add_argument("--test", default="data/test_clips", help="test clips rendered with --layout benchmark")
    parser.add_argument("--train-cache", default="data/clips/train_character_cache.pt", help="for the mean pose")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--sheet", type=Path, default=None, help="write a driving | truth | generated sheet here")
    parser.add_argument("--encoder-only", action="store_true")
    parser.add_argument("--max-clips", type=int, default=0)
    args = parser.parse_args(argv)
    from dimo_engine.cli.model_args import resolve_model_path

    torch.set_num_threads(2)
    pipe = load_pipeline(resolve_model_path(Path(args.model) if args.model else None), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    report = {"encoder": encoder_report(pipe, args.test, args.train_cache)}
    if not args.encoder_only:
        report["layer"] = layer_report(pipe, args.test, args.steps, args.sheet, args.max_clips)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
