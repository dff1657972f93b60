"""Reader and validator of the multi-view clip dataset the renderer writes (docs/formats.md).

Training reads clips only through `load_clip` / `ClipDataset`; `validate_clip` names every
problem of a clip folder in one sentence each (clip, file, what is wrong, how to fix it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from dimo_engine.errors import InputError

DATASET_FORMAT = "dimo-clip-dataset"
CLIP_FORMAT = "dimo-clip"
SUPPORTED_VERSION = 1
VIEW_KINDS = ("driving", "static", "moving")
SMPLH_MOTION_SHAPES = {  # field -> shape with "F" for the frame count
    "global_orient": ("F", 3),
    "body_pose": ("F", 21, 3),
    "left_hand_pose": ("F", 15, 3),
    "right_hand_pose": ("F", 15, 3),
    "betas": (10,),
    "transl": ("F", 3),
    "joints": ("F", 52, 3),
}
ANNOTATION_FIELDS = ("joints2d", "joints_visible", "hand_boxes", "person_box")
_RERENDER = "render the clip again (dimo render-clips)"


def _read_png_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"), dtype=np.uint8)  # (H, W, 4)


@dataclass
class ClipView:
    """One rendered view of a clip: its camera path, frames on disk and 2D annotations."""

    name: str
    kind: str
    folder: Path
    info: dict  # the manifest entry (azimuth_deg, move, ...)

    @cached_property
    def camera(self):
        from blender_addon.core.camera_path import load_camera_path

        return load_camera_path(self.folder / "camera.json")

    @cached_property
    def frame_paths(self) -> list[Path]:
        return sorted((self.folder / "frames").glob("*.png"))

    def frames(self, indices=None) -> np.ndarray:
        """RGBA frames as uint8 (F, H, W, 4), alpha = person mask; only `indices` are read."""
        paths = self.frame_paths
        chosen = range(len(paths)) if indices is None else [int(i) for i in indices]
        return np.stack([_read_png_rgba(paths[i]) for i in chosen])

    def backgrounds(self, indices=None) -> np.ndarray:
        """Background plates (the set without the person) as uint8 (F, H, W, 3); benchmark clips only
        (`dimo render-clips --layout benchmark`)."""
        paths = sorted((self.folder / "background").glob("*.png"))
        if len(paths) != len(self.frame_paths):
            raise InputError(f"{self.folder}: no background plates for every frame; render the test clips with "
                             f"`dimo render-clips --layout benchmark`.")
        chosen = range(len(paths)) if indices is None else [int(i) for i in indices]
        return np.stack([_read_png_rgba(paths[i])[..., :3] for i in chosen])

    @cached_property
    def annotations(self) -> dict[str, np.ndarray]:
        with np.load(self.folder / "annotations.npz") as data:
            return {key: data[key] for key in data.files}


@dataclass
class Clip:
    """A complete clip: manifest, SMPL-H motion arrays and its views by name."""

    path: Path
    manifest: dict
    motion: dict[str, np.ndarray]
    views: dict[str, ClipView] = field(default_factory=dict)

    @property
    def clip_id(self) -> str:
        return self.manifest["clip_id"]

    @property
    def num_frames(self) -> int:
        return int(self.manifest["num_frames"])

    @property
    def fps(self) -> float:
        return float(self.manifest["fps"])

    @property
    def width(self) -> int:
        return int(self.manifest["width"])

    @property
    def height(self) -> int:
        return int(self.manifest["height"])

    @property
    def driving_view(self) -> ClipView:
        return self.views[self.manifest["driving_view"]]

    def views_of_kind(self, kind: str) -> list[ClipView]:
        return [view for view in self.views.values() if view.kind == kind]


def _read_json(path: Path, clip: str, problems: list[str]) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        problems.append(f"clip {clip}: {path} is missing; {_RERENDER}.")
    except (OSError, ValueError) as error:
        problems.append(f"clip {clip}: {path} is not readable JSON ({error}); {_RERENDER}.")
    return None


def _manifest_problems(manifest: dict, clip: str, manifest_path: Path) -> list[str]:
    problems = []
    if manifest.get("format") != CLIP_FORMAT:
        problems.append(f"clip {clip}: {manifest_path} has format {manifest.get('format')!r}, expected {CLIP_FORMAT!r}; {_RERENDER}.")
    if manifest.get("version") != SUPPORTED_VERSION:
        problems.append(f"clip {clip}: {manifest_path} has version {manifest.get('version')!r}, this reader supports {SUPPORTED_VERSION}; update dimo or {_RERENDER}.")
    for key, kind in (("num_frames", int), ("width", int), ("height", int), ("fps", (int, float))):
        value = manifest.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or value <= 0:
            problems.append(f"clip {clip}: {manifest_path} field {key!r} is {value!r}, expected a positive number; {_RERENDER}.")
    views = manifest.get("views")
    if not isinstance(views, list) or not views:
        problems.append(f"clip {clip}: {manifest_path} lists no views; {_RERENDER}.")
        return problems
    names = []
    for entry in views:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"clip {clip}: {manifest_path} has a view entry without a name ({entry!r}); {_RERENDER}.")
            continue
        names.append(entry["name"])
        if entry.get("kind") not in VIEW_KINDS:
            problems.append(f"clip {clip}: {manifest_path} view {entry['name']!r} has kind {entry.get('kind')!r}, expected one of {', '.join(VIEW_KINDS)}; {_RERENDER}.")
    if len(set(names)) != len(names):
        problems.append(f"clip {clip}: {manifest_path} names a view twice; {_RERENDER}.")
    if manifest.get("driving_view") not in names:
        problems.append(f"clip {clip}: {manifest_path} driving_view {manifest.get('driving_view')!r} is not one of its views; {_RERENDER}.")
    return problems


def _motion_problems(motion_path: Path, clip: str, num_frames: int) -> tuple[dict, list[str]]:
    try:
        with np.load(motion_path) as data:
            motion = {key: data[key] for key in data.files}
    except FileNotFoundError:
        return {}, [f"clip {clip}: {motion_path} is missing; {_RERENDER}."]
    except (OSError, ValueError) as error:
        return {}, [f"clip {clip}: {motion_path} is not a readable .npz ({error}); {_RERENDER}."]
    problems = []
    other_rig = "joint_names" in motion and "global_orient" not in motion
    expected = {"joints": ("F", None, 3)} if other_rig else SMPLH_MOTION_SHAPES
    for key, shape in expected.items():
        if key not in motion:
            problems.append(f"clip {clip}: {motion_path} has no {key!r} array; {_RERENDER}.")
            continue
        array = motion[key]
        want = tuple(num_frames if dim == "F" else (array.shape[i] if dim is None and i < array.ndim else dim) for i, dim in enumerate(shape))
        if array.shape != want:
            problems.append(f"clip {clip}: {motion_path} {key!r} has shape {array.shape}, expected {want}; {_RERENDER}.")
        elif not np.all(np.isfinite(array)):
            problems.append(f"clip {clip}: {motion_path} {key!r} contains NaN or infinite values; {_RERENDER}.")
    return motion, problems


def _view_problems(folder: Path, clip: str, num_frames: int, width: int, height: int) -> list[str]:
    problems = []
    camera_file = folder / "camera.json"
    if not camera_file.is_file():
        problems.append(f"clip {clip}: {camera_file} is missing; {_RERENDER}.")
    else:
        from blender_addon.core.camera_path import load_camera_path

        try:
            camera = load_camera_path(camera_file)
        except (ValueError, OSError) as error:  # load_camera_path says what is wrong in one sentence
            problems.append(f"clip {clip}: {error}")
        else:
            if camera.num_frames != num_frames:
                problems.append(f"clip {clip}: {camera_file} has {camera.num_frames} frames, the manifest says {num_frames}; {_RERENDER}.")
            if (camera.width, camera.height) != (width, height):
                problems.append(f"clip {clip}: {camera_file} is {camera.width}x{camera.height}, the manifest says {width}x{height}; {_RERENDER}.")
    frames = sorted((folder / "frames").glob("*.png"))
    if len(frames) != num_frames:
        problems.append(f"clip {clip}: {folder / 'frames'} holds {len(frames)} PNG frames, the manifest says {num_frames}; {_RERENDER}.")
    for path in frames[:1] + frames[-1:]:  # the ends catch a changed size or mode without decoding every frame
        try:
            from PIL import Image

            with Image.open(path) as image:
                size, mode = image.size, image.mode
        except OSError as error:
            problems.append(f"clip {clip}: {path} is not a readable PNG ({error}); {_RERENDER}.")
            continue
        if size != (width, height):
            problems.append(f"clip {clip}: {path} is {size[0]}x{size[1]}, the manifest says {width}x{height}; {_RERENDER}.")
        if mode != "RGBA":
            problems.append(f"clip {clip}: {path} is {mode}, expected RGBA with the person mask in alpha; {_RERENDER}.")
    annotations_path = folder / "annotations.npz"
    try:
        with np.load(annotations_path) as data:
            annotations = {key: data[key] for key in data.files}
    except FileNotFoundError:
        return problems + [f"clip {clip}: {annotations_path} is missing; {_RERENDER}."]
    except (OSError, ValueError) as error:
        return problems + [f"clip {clip}: {annotations_path} is not a readable .npz ({error}); {_RERENDER}."]
    for key in ANNOTATION_FIELDS:
        if key not in annotations:
            problems.append(f"clip {clip}: {annotations_path} has no {key!r} array; {_RERENDER}.")
    if problems:
        return problems
    joints2d = annotations["joints2d"]
    expected = {
        "joints2d": (num_frames, joints2d.shape[1] if joints2d.ndim == 3 else -1, 2),
        "joints_visible": (num_frames, joints2d.shape[1] if joints2d.ndim == 3 else -1),
        "hand_boxes": (num_frames, 2, 4),
        "person_box": (num_frames, 4),
    }
    for key, shape in expected.items():
        if annotations[key].shape != shape:
            problems.append(f"clip {clip}: {annotations_path} {key!r} has shape {annotations[key].shape}, expected {shape}; {_RERENDER}.")
        elif key != "joints_visible" and not np.all(np.isfinite(annotations[key])):
            problems.append(f"clip {clip}: {annotations_path} {key!r} contains NaN or infinite values; {_RERENDER}.")
    return problems


def find_clip_problems(path) -> list[str]:
    """Every problem of the clip folder at `path`, one sentence each (empty when it is valid)."""
    path = Path(path)
    clip = path.name
    if not path.is_dir():
        return [f"clip {clip}: {path} is not a folder; point at a clip_NNNNNN folder of a rendered dataset."]
    manifest_path = path / "manifest.json"
    manifest = _read_json(manifest_path, clip, problems := [])
    if manifest is None:
        return problems
    problems += _manifest_problems(manifest, clip, manifest_path)
    if problems:
        return problems
    clip = manifest.get("clip_id", clip)
    num_frames, width, height = manifest["num_frames"], manifest["width"], manifest["height"]
    problems += _motion_problems(path / "motion.npz", clip, num_frames)[1]
    for entry in manifest["views"]:
        folder = path / "views" / entry["name"]
        if not folder.is_dir():
            problems.append(f"clip {clip}: view folder {folder} is missing; {_RERENDER}.")
            continue
        problems += _view_problems(folder, clip, num_frames, width, height)
    return problems


def validate_clip(path) -> None:
    """Raise InputError naming every problem of the clip folder at `path`; return quietly when valid."""
    problems = find_clip_problems(path)
    if problems:
        raise InputError(" ".join(problems))


def load_clip(path, validate: bool = True) -> Clip:
    """Open the clip folder at `path`: manifest and motion now, frames lazily per view."""
    path = Path(path)
    if validate:
        validate_clip(path)
    manifest = json.loads((path / "manifest.json").read_text())
    with np.load(path / "motion.npz") as data:
        motion = {key: data[key] for key in data.files}
    views = {
        entry["name"]: ClipView(name=entry["name"], kind=entry["kind"], folder=path / "views" / entry["name"], info=dict(entry))
        for entry in manifest["views"]
    }
    return Clip(path=path, manifest=manifest, motion=motion, views=views)


class ClipDataset:
    """The complete clips of one split of a rendered dataset, in index order (partial renders are skipped)."""

    def __init__(self, root, split: str = "train", validate: bool = True):
        self.root = Path(root)
        self.split = split
        dataset_file = self.root / "dataset.json"
        if not dataset_file.is_file():
            raise InputError(f"{self.root} has no dataset.json, so it is not a clip dataset; render one with `dimo render-clips --out {self.root}`.")
        try:
            self.info = json.loads(dataset_file.read_text())
        except ValueError as error:
            raise InputError(f"{dataset_file} is not valid JSON ({error}); render the dataset again.") from None
        if self.info.get("format") != DATASET_FORMAT or self.info.get("version") != SUPPORTED_VERSION:
            raise InputError(f"{dataset_file} is not a version-{SUPPORTED_VERSION} {DATASET_FORMAT!r} file; render the dataset again with this version of dimo.")
        split_dir = self.root / split
        self.clip_paths = sorted(p for p in split_dir.glob("clip_*") if p.is_dir()) if split_dir.is_dir() else []
        if not self.clip_paths:
            raise InputError(f"{split_dir} holds no complete clips; render the {split!r} split first (dimo render-clips).")
        self.validate = validate
        self._clips: dict[int, Clip] = {}

    def __len__(self) -> int:
        return len(self.clip_paths)

    def __getitem__(self, index: int) -> Clip:
        if index not in self._clips:
            self._clips[index] = load_clip(self.clip_paths[index], validate=self.validate)
        return self._clips[index]

    def __iter__(self):
        return (self[i] for i in range(len(self)))
