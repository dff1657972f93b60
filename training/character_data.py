"""The rendered clips held in memory as the default model's training examples: driving crops for the motion
encoders, full target frames (RGBA) and cameras for the character-layer generator, reference crops.

Everything a step needs is cut once from the clip dataset into one tensor file (`character_cache.pt` beside
dataset.json; rebuilt when the dataset changes), so a CPU step costs model time, not PNG decoding. Examples are
single frames: (clip, driving view, target view, reference view, frame), drawn with the three pair kinds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from blender_addon.core.atomic_io import atomic_write
from dimo_engine.clips import ClipDataset
from dimo_engine.person_crop import BACKGROUND, person_box_from_alpha, square_box
from dimo_engine.models.anchored_motion_encoder import box_features, view_frame_targets
from dimo_engine.models.motion_encoder import body_pose_targets, hand_pose_targets
from training.pairs import PAIR_KINDS, REFERENCE_FRAME, choose_views

CACHE_NAME = "character_cache.pt"
CACHE_VERSION = 2
DRIVING_SIZE = 64
HAND_SIZE = 16


def _crop(frames: np.ndarray, box, size: int) -> np.ndarray:
    """uint8 frames (F, H, W, C) -> box crops (F, C, size, size) uint8 (outside the image: 0)."""
    from dimo_engine.character_layer import crop_boxes

    images = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    boxes = torch.as_tensor(np.asarray(box, dtype=np.float32)).reshape(-1, 4).expand(images.shape[0], 4)
    return crop_boxes(images, boxes, size).round().clamp(0, 255).to(torch.uint8).numpy()


def _dataset_fingerprint(clips: ClipDataset) -> str:
    names = "|".join(str(p.name) for p in clips.clip_paths)
    return hashlib.sha256(f"{CACHE_VERSION}|{names}".encode()).hexdigest()[:16]


def build_character_cache(root, split: str = "train", out: Path | None = None, progress: bool = True) -> Path:
    """Cut every clip of a split into the in-memory training tensors and save them (tmp name, then rename)."""
    from tqdm import tqdm

    clips = ClipDataset(root, split)
    out = Path(out) if out is not None else Path(root) / f"{split}_{CACHE_NAME}"
    fingerprint = _dataset_fingerprint(clips)
    if out.is_file():
        try:
            if torch.load(out, map_location="cpu", weights_only=False)["fingerprint"] == fingerprint:
                return out
        except Exception:  # a damaged cache is rebuilt
            pass
    records = []
    for clip in tqdm(clips, desc=f"caching {split} clips", disable=not progress, unit="clip"):
        motion = {k: torch.from_numpy(np.asarray(v)).float() for k, v in clip.motion.items()}
        views = []
        for view in clip.views.values():
            rgba = view.frames()  # (F, H, W, 4)
            camera = view.camera
            notes = view.annotations
            driving_box = square_box(person_box_from_alpha(rgba[..., 3]), clip.width, clip.height)
            person = person_box_from_alpha(rgba[REFERENCE_FRAME:REFERENCE_FRAME + 1, ..., 3])
            reference_box = square_box(person, clip.width, clip.height)
            hand_crops = np.stack([_crop(rgba[:, :, :, :3][f:f + 1].repeat(2, 0), notes["hand_boxes"][f], HAND_SIZE)
                                   for f in range(rgba.shape[0])])  # (F, 2, 3, s, s)
            side = float(driving_box[2] - driving_box[0])
            views.append({
                "name": view.name, "kind": view.kind,
                "frames": torch.from_numpy(rgba).permute(0, 3, 1, 2).contiguous(),  # (F, 4, H, W) uint8
                "driving_crops": torch.from_numpy(_crop(rgba, driving_box, DRIVING_SIZE)),  # (F, 4, 64, 64) uint8
                "driving_box": torch.tensor(driving_box, dtype=torch.float32),
                "hand_crops": torch.from_numpy(hand_crops),
                "reference_crop": torch.from_numpy(_crop(rgba[REFERENCE_FRAME:REFERENCE_FRAME + 1], reference_box,
                                                         DRIVING_SIZE)[0]),  # (4, 64, 64) uint8
                "K": torch.from_numpy(camera.K).float(),
                "world_to_camera": torch.from_numpy(camera.world_to_camera).float(),
                "camera_to_world": torch.from_numpy(camera.camera_to_world).float(),
                "joints_2d": (torch.from_numpy(notes["joints2d"]).float()
                              - torch.tensor(driving_box[:2], dtype=torch.float32)) / side,  # (F, 52, 2) crop units
            })
        records.append({
            "clip_id": clip.clip_id, "width": clip.width, "height": clip.height,
            "joints": motion["joints"],  # (F, 52, 3) character frame
            "body_pose_6d": body_pose_targets(motion["global_orient"], motion["body_pose"]),  # (F, 22, 6)
            "hand_pose_6d": hand_pose_targets(motion["left_hand_pose"], motion["right_hand_pose"]),  # (F, 2, 15, 6)
            "views": views,
        })
    with atomic_write(out) as partial:
        torch.save({"fingerprint": fingerprint, "split": split, "clips": records}, partial)
    return out


@dataclass(frozen=True)
class FramePair:
    kind: str
    clip: int
    driving: int
    target: int
    reference: int
    frame: int


class CharacterExamples:
    """Random single-frame examples from the cached clips of one dataset's cache or several (a list of cache files);
    `batch(rng, size)` returns one training batch."""

    def __init__(self, cache_paths, ratios: dict[str, float] | None = None):
        paths = cache_paths if isinstance(cache_paths, (list, tuple)) else [cache_paths]
        self.clips = [clip for path in paths for clip in torch.load(path, map_location="cpu", weights_only=False)["clips"]]
        ratios = ratios or {"same_view": 0.3, "cross_view": 0.5, "moving_camera": 0.2}
        weights = np.array([max(float(ratios.get(k, 0.0)), 0.0) for k in PAIR_KINDS])
        self.kind_probabilities = weights / weights.sum()

    def __len__(self) -> int:
        return len(self.clips)

    def choose(self, rng: np.random.Generator) -> FramePair:
        clip_index = int(rng.integers(len(self.clips)))
        views = self.clips[clip_index]["views"]
        kind, driving, target, reference = choose_views(rng, [(i, v["kind"]) for i, v in enumerate(views)],
                                                        self.kind_probabilities)
        frame = int(rng.integers(views[int(driving)]["frames"].shape[0]))
        return FramePair(kind, clip_index, int(driving), int(target), int(reference), frame)

    def driving_inputs(self, clip: int, view: int, frame: int) -> dict[str, torch.Tensor]:
        """What the motion encoders read of one driving frame, and their training targets."""
        from dimo_engine.character_layer import view_locked_points

        record = self.clips[clip]
        v = record["views"][view]
        anchors, root = view_frame_targets(record["joints"][frame, :22], v["camera_to_world"][frame])
        box = v["driving_box"]
        joints_px = v["joints_2d"][frame, :22] * (box[2] - box[0]) + box[:2]  # (22, 2) frame pixels
        return {
            "crop": v["driving_crops"][frame].float() / 255.0,  # (4, 64, 64) RGBA
            "hand_crops": v["hand_crops"][frame].float() / 255.0,  # (2, 3, s, s)
            "box": box_features(v["driving_box"], record["width"], record["height"]),  # (3,)
            "anchors": anchors, "root": root,  # (22, 3), (3,) view frame
            "joints_2d": v["joints_2d"][frame],  # (52, 2)
            "body_pose_6d": record["body_pose_6d"][frame], "hand_pose_6d": record["hand_pose_6d"][frame],
            "joints": record["joints"][frame, :22],  # (22, 3) character frame
            # what the benchmark baselines are given instead of the crop: the camera's centre (where noisy3d's
            # reconstruction errs along its rays) and the true 2D joints, view-locked (pose2d)
            "camera_centre": v["camera_to_world"][frame, :3, 3],  # (3,) character frame
            "view_locked_joints": view_locked_points(joints_px, record["width"], record["height"]),  # (22, 3)
        }

    def batch(self, rng: np.random.Generator, size: int, with_targets: bool = True) -> dict[str, torch.Tensor]:
        """`size` examples: driving inputs of the frame and of the clip's first frame, target RGBA, cameras."""
        pairs = [self.choose(rng) for _ in range(size)]
        now = [self.driving_inputs(p.clip, p.driving, p.frame) for p in pairs]
        first = [self.driving_inputs(p.clip, p.driving, 0) for p in pairs]
        out = {f"driving_{k}": torch.stack([x[k] for x in now]) for k in now[0]}
        out.update({f"first_{k}": torch.stack([x[k] for x in first]) for k in first[0]})
        out["kind"] = torch.tensor([PAIR_KINDS.index(p.kind) for p in pairs])
        if with_targets:
            views = [self.clips[p.clip]["views"][p.target] for p in pairs]
            out["target_frames"] = torch.stack([v["frames"][p.frame] for v, p in zip(views, pairs)]).float() / 255.0
            out["target_K"] = torch.stack([v["K"][p.frame] for v, p in zip(views, pairs)])
            out["target_world_to_camera"] = torch.stack([v["world_to_camera"][p.frame] for v, p in zip(views, pairs)])
            out["reference_crop"] = torch.stack(
                [self.clips[p.clip]["views"][p.reference]["reference_crop"] for p in pairs]).float() / 255.0
        return out


def composite_over_background(rgba: torch.Tensor) -> torch.Tensor:
    """RGBA `(..., 4, H, W)` in [0, 1] -> RGB over the plain grey the models use for "no person"."""
    alpha = rgba[..., 3:4, :, :]
    return rgba[..., :3, :, :] * alpha + BACKGROUND * (1 - alpha)


def dataset_summary(cache_path) -> str:
    data = torch.load(cache_path, map_location="cpu", weights_only=False)
    clips = data["clips"]
    views = sum(len(c["views"]) for c in clips)
    frames = sum(v["frames"].shape[0] for c in clips for v in c["views"])
    return json.dumps({"clips": len(clips), "views": views, "frames": frames})
