"""What the default model is measured by, on held-out test clips (rendered with `--layout benchmark`):

- `codec_report`: what the generation space itself loses (ground truth -> person crop -> full frame);
- `encoder_report`: the body encoder's joints in the character frame (from the driving frames alone, no driving
  camera) against the mean-pose baseline, and its front/back confusion rate;
- `layer_report`: the character layer through the same calls as `dimo generate` (`encode_driving` ->
  `reenact`), per target kind: silhouette IoU of the generated alpha against the rendered mask, 2D joint error of
  the motion the layer is drawn from (its anchors projected by the target camera) and of the joints found on the
  layer's pixels (`located_joints`, next to that locator's own error on the ground truth), the alpha's frame-to-frame
  flicker next to the ground truth's, and the person's colour error where both put the person next to a flat grey
  figure's (`person_colour_error`: does it draw the reference's look); plus a driving | ground truth | generated sheet;
- `proxy_report`: the body proxy alone (capsules around the motion's bones, no generator) pasted into the frames,
  the same silhouette IoU: what a typical body drawn from the motion scores, from the true joints or the encoded
  motion, so the generator's own contribution and the motion's cost can be read apart.

`python -m training.evaluate_character --model PATH --test data/test_clips` prints both as JSON.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dimo_engine.clips import ClipDataset
from dimo_engine.errors import InputError
from dimo_engine.models.anchored_motion_encoder import facing_error_deg
from training.bench_metrics import joint_error

NOVEL_WIDE = ("novel_90", "novel_180")  # targets >= 90 degrees from the driving view


def _mean_pose(train_cache: str | None) -> torch.Tensor | None:
    if not train_cache or not Path(train_cache).is_file():
        return None
    clips = torch.load(train_cache, map_location="cpu", weights_only=False)["clips"]
    return torch.cat([c["joints"][:, :22] for c in clips]).mean(0)  # (22, 3) character frame


def benchmark_clips(test_root, max_clips: int = 0) -> list:
    """The test clips under `test_root` (the first `max_clips`, 0: all); InputError when there are none."""
    clips = list(ClipDataset(test_root, "test"))
    clips = clips[:max_clips] if max_clips else clips
    if not clips:
        raise InputError(f"--test {test_root}: no test clips there; render them with `dimo render-clips --split test "
                         f"--layout benchmark`.")
    return clips


def silhouette_iou(predicted_alpha: np.ndarray, true_alpha: np.ndarray) -> float:
    """IoU of alpha > 0.5 masks over all frames `(F, H, W)` (floats in [0, 1])."""
    a, b = predicted_alpha > 0.5, true_alpha > 0.5
    return float((a & b).sum() / max((a | b).sum(), 1))


def person_colour_error(generated: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """How far the drawn person's colours are from the true person's, where both put the person (alpha > 0.5):
    mean absolute RGB difference in [0, 1] of a generated layer `(F, H, W, 4)` in [0, 1] against the render uint8
    `(F, H, W, 4)`, and the same for a flat grey figure (0.5) on those pixels, the figure a generator that ignores
    the reference's look hedges towards. (nan, nan) when the two never overlap."""
    rendered = truth.astype(np.float32) / 255.0
    both = (generated[..., 3] > 0.5) & (rendered[..., 3] > 0.5)
    if not both.any():
        return float("nan"), float("nan")
    true_rgb = rendered[..., :3][both]
    return float(np.abs(generated[..., :3][both] - true_rgb).mean()), float(np.abs(0.5 - true_rgb).mean())


@torch.no_grad()
def located_joints(pipe, frames: np.ndarray) -> torch.Tensor:
    """Where a person's 22 body joints are in RGBA frames uint8 `(F, H, W, 4)` (a generated layer or a render):
    `(F, 22, 2)` pixels, read by the body encoder's 2D head (mirror-averaged) from the person's crop, cut around the
    alpha over the clip as `encode_driving_clip` cuts a driving clip. A keypoint locator for the pixels themselves,
    at the crop's resolution (the project's full-frame locator errs by 8-10 px on the ground truth at 128 px)."""
    from dimo_engine.character_layer import crop_boxes
    from dimo_engine.models.anchored_motion_encoder import box_features
    from dimo_engine.person_crop import BACKGROUND

    box = pipe._driving_box(frames, "layer")
    images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0  # (F, 4, H, W)
    images = images[:, :3] * images[:, 3:] + BACKGROUND * (1 - images[:, 3:])  # over the models' plain grey
    boxes = torch.tensor(box, dtype=torch.float32).expand(images.shape[0], 4)
    height, width = frames.shape[1:3]
    crops = crop_boxes(images, boxes, int(pipe.body_encoder.config.image_size))  # (F, 3, S, S)
    joints = pipe.mirror_averaged(crops[None], box_features(boxes, width, height)[None])["joints_2d"][0, :, :22]
    return joints * (boxes[:, 2] - boxes[:, 0])[:, None, None] + boxes[:, None, :2]


def layer_uint8(layer: np.ndarray) -> np.ndarray:
    """A generated layer in [0, 1] -> uint8, as `dimo generate` writes its PNGs."""
    return (np.clip(layer, 0, 1) * 255 + 0.5).astype(np.uint8)


def located_joint_error(locate, frames: np.ndarray, joints_2d: torch.Tensor, visible: torch.Tensor) -> float:
    """Mean pixel error of the body joints `locate` finds on RGBA frames uint8 `(F, H, W, 4)` (e.g. `located_joints`
    with its pipeline) against the true ones `(F, 22, 2)` where `visible` `(F, 22)`; NaN where nothing is drawn."""
    if not (frames[..., 3] > 127).any():
        return float("nan")  # nothing drawn: no joints to find
    return joint_error(locate(frames)[:, :22], joints_2d, visible)


def alpha_flicker(alpha: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of an alpha sequence `(F, H, W)` inside the person's reach."""
    return float(np.abs(np.diff(alpha, axis=0)).mean())


def person_box(true_alpha: torch.Tensor, min_side: int = 0) -> tuple[slice, slice]:
    """The box the person covers over a clip, from its true alpha `(F, H, W)`: (rows, columns) slices, each grown
    about its centre to at least `min_side` pixels where the frame allows (SSIM's window needs 11)."""
    covered = true_alpha.sum(0) > 0

    def span(hits: torch.Tensor, length: int) -> slice:
        low, high = int(hits.min()), int(hits.max()) + 1
        side = min(max(high - low, min_side), length)
        low = min(max(low - (side - (high - low)) // 2, 0), length - side)
        return slice(low, low + side)

    return span(covered.any(1).nonzero(), covered.shape[0]), span(covered.any(0).nonzero(), covered.shape[1])


def pose_errors_mm(anchors: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Mean joint error of a clip's anchors `(F, 22, 3)` against the true joints `(F, 22, 3)` (character frame), in
    millimetres: as placed, and root-relative (the pose alone)."""
    error = (anchors - truth).norm(dim=-1).mean().item() * 1000
    relative = ((anchors - anchors[:, :1]) - (truth - truth[:, :1])).norm(dim=-1).mean().item() * 1000
    return error, relative


def codec_report(test_root) -> dict:
    """The generation space's own loss: each test view's ground truth cut into the model's person crop (box from the
    true joints, the recipe inference applies to the predicted ones) and pasted back. Silhouette IoU, and PSNR over
    the box the person covers in the clip, over the plain grey."""
    from dimo_engine.character_layer import crop_boxes, paste_crops, target_boxes
    from training.character_data import DRIVING_SIZE, composite_over_background

    ious, psnrs = [], []
    for clip in ClipDataset(test_root, "test"):
        joints = torch.from_numpy(clip.motion["joints"][:, :22]).float()
        for view in clip.views.values():
            camera = view.camera
            boxes = target_boxes(joints, torch.from_numpy(camera.K).float(), torch.from_numpy(camera.world_to_camera).float())
            frames = torch.from_numpy(view.frames()).permute(0, 3, 1, 2).float() / 255.0
            back = paste_crops(crop_boxes(frames, boxes, DRIVING_SIZE), boxes, clip.height, clip.width)
            ious.append(silhouette_iou(back[:, 3].numpy(), frames[:, 3].numpy()))
            box = (slice(None), slice(None), *person_box(frames[:, 3]))
            error = (composite_over_background(frames) - composite_over_background(back))[box].pow(2).mean()
            psnrs.append(float(10 * torch.log10(1 / error)))
    return {"views": len(ious), "iou": round(float(np.mean(ious)), 3), "iou_min": round(float(np.min(ious)), 3),
            "person_box_psnr_db": round(float(np.mean(psnrs)), 1), "psnr_min_db": round(float(np.min(psnrs)), 1)}


def encoder_report(pipe, test_root, train_cache: str | None = None, fit_steps: int | None = None) -> dict:
    """Joint error (mm) of the encoder's character-frame anchors on each test clip's driving view (`fit_steps`: the
    silhouette fit's steps, None for the pipeline's own)."""
    from dimo_engine.driving import encode_driving

    mean_pose = _mean_pose(train_cache)
    errors, relative, baseline, confusion, confusion_all = [], [], [], [], []
    for clip in ClipDataset(test_root, "test"):
        view = clip.driving_view
        motion = encode_driving(pipe, view.frames(), clip.fps, silhouette_fit_steps=fit_steps)
        anchors = motion.body[0, :, :, -3:].cpu()  # (F, 22, 3)
        truth = torch.from_numpy(clip.motion["joints"][:, :22]).float()
        error, pose_error = pose_errors_mm(anchors, truth)
        errors.append(error)
        relative.append(pose_error)
        if mean_pose is not None:
            baseline.append((mean_pose[None] - truth).norm(dim=-1).mean().item() * 1000)
        confusion.append((facing_error_deg(anchors, truth) > 90).float().mean().item())
        for other in clip.views.values():  # every test camera as the driving one: back views, 90 degrees, above
            other_motion = encode_driving(pipe, other.frames(), clip.fps, silhouette_fit_steps=fit_steps)
            seen = other_motion.body[0, :, :, -3:].cpu()
            confusion_all.append((facing_error_deg(seen, truth) > 90).float().mean().item())
    report = {"clips": len(errors), "joint_error_mm": round(float(np.mean(errors)), 1),
              "root_relative_error_mm": round(float(np.mean(relative)), 1),
              "front_back_confusion": round(float(np.mean(confusion)), 3),
              "front_back_confusion_any_view": round(float(np.mean(confusion_all)), 3)}
    if baseline:
        report["mean_pose_error_mm"] = round(float(np.mean(baseline)), 1)
        report["ratio_to_mean_pose"] = round(report["joint_error_mm"] / report["mean_pose_error_mm"], 3)
    return report


MOTION_SOURCES = ("encoded", "true_travel", "true_pose", "true_anchors")


def with_true_anchors(motion, joints: torch.Tensor, source: str):
    """The error decomposition: `motion` with its anchors replaced, keeping the encoder's learned features.

    "true_travel": the encoded pose (root-relative, turned by its own facing) placed at the true root; "true_pose":
    the true pose (root-relative, at the encoded skeleton's size, turned by the encoded first frame's facing) placed
    at the encoded root: what a perfect reading of the pose alone would give;
    "true_anchors": the true joints `(F, J, 3)` (character frame) as the anchors. "encoded" returns `motion` as is.
    """
    from dimo_engine.pipelines.pipeline_dimo import MotionTokens
    from dimo_engine.pipelines.pipeline_dimo_character import token_anchors

    if source == "encoded":
        return motion
    body = motion.body.clone()
    truth = joints[:, :22].to(body)
    if source == "true_travel":
        anchors = body[0, :, :, -3:]
        body[0, :, :, -3:] = anchors - anchors[:, :1] + truth[:, :1]
    elif source == "true_pose":
        from dimo_engine.models.anchored_motion_encoder import body_facing, heading_rotation

        anchors = body[0, :, :, -3:]
        pose, true_pose = anchors - anchors[:, :1], truth - truth[:, :1]
        size = pose.norm(dim=-1).mean() / true_pose.norm(dim=-1).mean()
        turn = heading_rotation(body_facing(anchors[0])).T @ heading_rotation(body_facing(truth[0]))
        body[0, :, :, -3:] = anchors[:, :1] + size * torch.einsum("ij,fkj->fki", turn, true_pose)
    elif source == "true_anchors":
        body[0, :, :, -3:] = truth
    else:
        raise ValueError(f"motion source {source!r} is not one of {MOTION_SOURCES}")
    hands = motion.hands.clone()
    hands[0, :, :, -3:] = token_anchors(body[0, :, :, -3:])[:, 22:]
    return MotionTokens(body, hands)


def character_height_of(clip) -> float:
    """The height a test clip's character stands, crown to floor (its body model mesh with the clip's betas): what an
    artist types as `character_height` for their own character."""
    from dimo_engine.character_height import body_height

    return body_height(clip.motion["betas"])


# Where a test clip's character gets its height: "reference", its reference image measured through that image's camera
# (what `dimo generate --reference-camera` and the add-on give); "given", the character's own height (`dimo generate
# --character-height`, an artist's input); "video", neither: the size the driving video is read at.
HEIGHT_SOURCES = ("reference", "given", "video")


def scored_motion(pipe, clip, motion_source: str = "encoded", height: str = "reference", fit_steps: int | None = None):
    """The motion a test clip is scored with: its driving view encoded, parts swapped for the truth by `motion_source`
    (`with_true_anchors`), and scaled to its character's height from `height` (`HEIGHT_SOURCES`; what `reenact` does
    with a reference camera or a `character_height`, done here so the motion's own joint error is the drawn one's)."""
    from dimo_engine.driving import encode_driving

    if height not in HEIGHT_SOURCES:
        raise InputError(f"height must be one of {', '.join(HEIGHT_SOURCES)}, got {height!r}")
    motion = encode_driving(pipe, clip.driving_view.frames(), clip.fps, silhouette_fit_steps=fit_steps)
    motion = with_true_anchors(motion, torch.from_numpy(clip.motion["joints"]).float(), motion_source)
    if height == "given":
        return pipe.motion_at_height(motion, character_height_of(clip))
    if height == "reference":
        reference = clip.views["reference"]  # the reference image and the camera that took it
        measured = pipe.reference_height(reference.frames([0])[0], reference.camera)
        return motion if measured is None else pipe.motion_at_height(motion, measured)
    return motion


def layer_report(pipe, test_root, steps: int | None = None, sheet: Path | None = None, max_clips: int = 0,
                 motion_source: str = "encoded", height: str = "reference", fit_steps: int | None = None) -> dict:
    """Per target kind (driving, novel_45/90/180, elevation, moving) and for novel >= 90: the layer's figures.
    `motion_source` other than "encoded" replaces the motion's anchors by the truth (`with_true_anchors`), to
    measure how much of the error the generator, the pose and the root's travel each cost. `height`: where each clip's
    character gets its height (`HEIGHT_SOURCES`; by default its reference image with that image's camera)."""
    from dimo_engine.reenact import GenerationSettings, conform_camera, reenact

    per_kind: dict[str, dict[str, list[float]]] = {}
    sheet_rows = []
    for clip in benchmark_clips(test_root, max_clips):
        driving = clip.driving_view.frames()
        motion = scored_motion(pipe, clip, motion_source, height, fit_steps)
        reference = clip.views["reference"].frames([0])[0]
        settings = GenerationSettings(num_inference_steps=steps)
        for view in clip.views.values():
            kind = view.info.get("bench_target")
            if kind is None:
                continue
            camera = conform_camera(view.camera, motion.num_frames, float(pipe.config.fps))
            frames = reenact(pipe, reference, motion, [camera], settings=settings)[0]
            truth = view.frames()
            true_alpha = truth[..., 3].astype(np.float32) / 255.0
            uv = pipe.motion_joint_pixels(motion, camera)
            joints_2d = torch.from_numpy(view.annotations["joints2d"][:, :22]).float()
            visible = torch.from_numpy(view.annotations["joints_visible"][:, :22])
            motion_error = joint_error(uv, joints_2d, visible)
            locate = partial(located_joints, pipe)
            located_error = located_joint_error(locate, layer_uint8(frames), joints_2d, visible)
            located_floor = located_joint_error(locate, truth, joints_2d, visible)
            figures = per_kind.setdefault(kind, {"iou": [], "joint_error_px": [], "flicker": [], "flicker_truth": [],
                                                 "located_joint_error_px": [], "located_floor_px": [],
                                                 "colour_error": [], "colour_error_grey": []})
            figures["iou"].append(silhouette_iou(frames[..., 3], true_alpha))
            colour, grey = person_colour_error(frames, truth)
            figures["colour_error"].append(colour)
            figures["colour_error_grey"].append(grey)
            figures["joint_error_px"].append(motion_error)
            figures["located_joint_error_px"].append(located_error)
            figures["located_floor_px"].append(located_floor)
            figures["flicker"].append(alpha_flicker(frames[..., 3]))
            figures["flicker_truth"].append(alpha_flicker(true_alpha))
            if sheet is not None and kind in ("novel_90", "moving") and len(sheet_rows) < 6:
                sheet_rows.append((f"{clip.clip_id} {view.name}", driving, truth, frames))
    summary = {kind: {k: round(float(np.nanmean(v)), 4) for k, v in figures.items()} for kind, figures in per_kind.items()}
    wide = [per_kind[k] for k in NOVEL_WIDE if k in per_kind]
    if wide:
        summary["novel_>=90"] = {k: round(float(np.nanmean(sum((f[k] for f in wide), []))), 4) for k in wide[0]}
    if sheet is not None and sheet_rows:
        write_sheet(sheet_rows, sheet)
    return summary


@torch.no_grad()
def proxy_report(pipe, test_root, motion_source: str = "encoded", max_clips: int = 0, height: str = "reference",
                 fit_steps: int | None = None) -> dict:
    """Per target kind and for novel >= 90: silhouette IoU of the body proxy alone (`character_layer.body_proxy`
    drawn from the motion's anchors in each target camera, its crop box as the layer's, pasted into the frame)."""
    from dimo_engine.character_layer import body_proxy, paste_crops
    from dimo_engine.reenact import conform_camera

    per_kind: dict[str, list[float]] = {}
    for clip in benchmark_clips(test_root, max_clips):
        motion = scored_motion(pipe, clip, motion_source, height, fit_steps)
        for view in clip.views.values():
            kind = view.info.get("bench_target")
            if kind is None:
                continue
            camera = conform_camera(view.camera, motion.num_frames, float(pipe.config.fps))
            _, boxes = pipe.motion_maps(motion, camera)
            anchors = motion.body[0, :, :, -3:].float()
            K, world_to_camera = torch.from_numpy(camera.K).float(), torch.from_numpy(camera.world_to_camera).float()
            coverage = body_proxy(anchors, K, world_to_camera, boxes, int(pipe.config.crop_size))
            layer = paste_crops(coverage, boxes, clip.height, clip.width)[:, 0].numpy()
            per_kind.setdefault(kind, []).append(silhouette_iou(layer, view.frames()[..., 3] / 255.0))
    summary = {kind: round(float(np.mean(v)), 4) for kind, v in per_kind.items()}
    wide = sum((per_kind[k] for k in NOVEL_WIDE if k in per_kind), [])
    if wide:
        summary["novel_>=90"] = round(float(np.mean(wide)), 4)
    return summary


@torch.no_grad()
def probe_motion(pipe, cache_path, num_pairs: int = 32, seed: int = 123, noise_levels=(0.3, 0.6, 0.9)) -> dict:
    """Does the generator read the motion? Its clean-image loss on the person's pixels (alpha > 0 in the target
    crop) for training pairs as trained, with the motion maps dropped, and with another pair's reference."""
    from dimo_engine.character_layer import crop_boxes, target_boxes
    from dimo_engine.pipelines.pipeline_dimo_character import rgba_to_model, token_anchors
    from training.character_data import CharacterExamples, composite_over_background
    from training.train_character import character_anchors, encode

    examples = CharacterExamples(cache_path)
    batch = examples.batch(np.random.default_rng(seed), num_pairs)
    now = encode(pipe, batch, "driving_", composite_over_background(batch["driving_crop"]))
    first = encode(pipe, batch, "first_", composite_over_background(batch["first_crop"]))
    anchors = token_anchors(character_anchors(now, first, batch["driving_joints"][:, 0]))
    K, world_to_camera, size = batch["target_K"], batch["target_world_to_camera"], int(pipe.config.crop_size)
    boxes = target_boxes(anchors, K, world_to_camera)
    clean = rgba_to_model(crop_boxes(batch["target_frames"], boxes, size))
    reference = rgba_to_model(batch["reference_crop"])
    maps = pipe.splat(anchors, now["features"][:, 0], K, world_to_camera, boxes, pipe.appearance_colours(reference))
    person = (clean[:, 3:4] > -1 + 1e-3).expand_as(clean)
    generator = torch.Generator().manual_seed(seed)
    other = reference.roll(1, dims=0)  # another pair's character, its colours splatted too for a reading generator
    other_maps = pipe.splat(anchors, now["features"][:, 0], K, world_to_camera, boxes, pipe.appearance_colours(other))
    conditions = {"as trained": (reference, maps), "motion dropped": (reference, torch.zeros_like(maps)),
                  "other reference": (other, other_maps)}
    losses = {name: [] for name in conditions}
    for sigma in noise_levels:
        noise = torch.randn(clean.shape, generator=generator)
        noisy = (1 - sigma) * clean + sigma * noise
        t = torch.full((clean.shape[0],), sigma * 1000.0)
        for name, (ref, motion_maps) in conditions.items():
            error = (pipe.predict_clean(noisy, t, ref, motion_maps) - clean).pow(2)
            losses[name].append(float(error[person].mean()))
    figures = {name: round(float(np.mean(v)), 5) for name, v in losses.items()}
    base = figures["as trained"]
    return {"person_loss": figures, "increase_without_motion": round(figures["motion dropped"] / base - 1, 3),
            "increase_other_reference": round(figures["other reference"] / base - 1, 3), "pairs": num_pairs}


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


def with_encoders(pipe, checkpoint: str) -> None:
    """Put an encoder stage's encoders (`checkpoint`) into `pipe`, the body encoder built with the geometry its weights
    were trained with (an integral decoder's weights say "integral")."""
    from dimo_engine.models.anchored_motion_encoder import AnchoredMotionEncoder
    from training.train_character import retrained_encoders

    weights = retrained_encoders(checkpoint)
    geometry = AnchoredMotionEncoder.geometry_of(weights["body_encoder"])
    # the config's own fields only: a folder saved before `geometry` existed lists it in `_use_default_values`, which
    # from_config would otherwise reset to the default
    settings = {key: value for key, value in pipe.body_encoder.config.items() if not key.startswith("_")}
    body = AnchoredMotionEncoder.from_config({**settings, "geometry": geometry})
    body.load_state_dict(weights["body_encoder"])
    pipe.hand_encoder.load_state_dict(weights["hand_encoder"])
    pipe.register_modules(body_encoder=body.eval())


def main(argv: list[str] | None = None) -> int:
    from dimo_engine.pipelines import load_pipeline

    parser = argparse.ArgumentParser(prog="python -m training.evaluate_character", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="pipeline folder (default: the shipped default model)")
    parser.add_argument("--encoders", default=None, metavar="CHECKPOINT",
                        help="an encoder stage's checkpoint whose encoders replace the model's (score them before the "
                             "generator learns them: --encoder-only or --proxy-only)")
    parser.add_argument("--test", default="data/test_clips", help="test clips rendered with --layout benchmark")
    parser.add_argument("--train-cache", default="data/clips/train_character_cache.pt", help="for the mean pose")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--sheet", type=Path, default=None, help="write a driving | truth | generated sheet here")
    parser.add_argument("--encoder-only", action="store_true")
    parser.add_argument("--max-clips", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (the figures in the docs), cuda, or auto")
    parser.add_argument("--motion-source", choices=MOTION_SOURCES, default="encoded",
                        help="replace the encoded anchors by the truth (error decomposition)")
    parser.add_argument("--height", choices=HEIGHT_SOURCES, default="reference",
                        help="where each clip's character gets its height: its reference image measured through that "
                             "image's camera (`dimo generate --reference-camera`; default), the character's own "
                             "(`--character-height`, as an artist gives it), or the driving video alone")
    parser.add_argument("--given-height", dest="height", action="store_const", const="given", default="reference",
                        help="the same as --height given")
    parser.add_argument("--silhouette-fit-steps", type=int, default=None, metavar="N",
                        help="steps of the driving pose's fit to the clip's silhouettes (default: the pipeline's; "
                             "0: the encoder's reading as it is)")
    parser.add_argument("--proxy-only", action="store_true",
                        help="score the body proxy alone (no generator) instead of the generated layer")
    args = parser.parse_args(argv)
    from dimo_engine.cli.model_args import resolve_model_path

    torch.set_num_threads(2)
    pipe = load_pipeline(resolve_model_path(Path(args.model) if args.model else None), device=args.device)
    pipe.set_progress_bar_config(disable=True)
    if args.encoders:
        with_encoders(pipe, args.encoders)
        pipe.to(pipe.generator.device)
    if args.proxy_only:
        report = {"proxy": proxy_report(pipe, args.test, args.motion_source, args.max_clips, args.height,
                                        args.silhouette_fit_steps)}
        print(json.dumps(report, indent=1))
        return 0
    report = {"codec": codec_report(args.test),
              "encoder": encoder_report(pipe, args.test, args.train_cache, args.silhouette_fit_steps)}
    if Path(args.train_cache).is_file():
        report["probe"] = probe_motion(pipe, args.train_cache)
    if not args.encoder_only:
        report["layer"] = layer_report(pipe, args.test, args.steps, args.sheet, args.max_clips, args.motion_source,
                                       args.height, args.silhouette_fit_steps)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
