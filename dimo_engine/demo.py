"""The main job in one command (`dimo demo`): Blender renders a held-out motion as a driving clip, and the
same motion done by another character as the reference image (front still, frame 0) and as ground truth
from an orbiting, dollying camera; the model re-enacts the driving clip with that character from that
camera; the frames, MP4s and a driving | ground truth | DiMo sheet are written, every stage timed.

Runs on a fresh machine with no network and no GPU: the body model file is generated on first use, and
without a shipped default model an untrained one stands in (and says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from blender_addon.core.atomic_io import atomic_write, replace_folder, write_json_atomic
from dimo_engine.errors import InputError

CAMERA_PHRASE = "orbit left 90 degrees while dolly in"
# Held-out whole-body families: no training clip has them, and they read well at 128 px (a finger-only
# family such as "pinch" would not).
DEMO_FAMILIES = ("jumping_jacks", "dance_twist")
SHEET_COLUMNS = ("driving", "ground truth", "DiMo")
SHEET_HEADER_PX = 14
SHEET_ROWS = 6
DEMO_RECORD = "demo.json"  # also marks a folder as a demo's output, which a new run may replace
# The joints fill at most this much of the image on the tightest frame; flesh and hair reach ~10 % further.
ORBIT_FILL = 0.75


class DemoRenderFailed(RuntimeError):
    """The Blender worker exited with an error; the message holds the end of its log."""


@dataclasses.dataclass
class DemoSettings:
    out: Path = Path("dimo-demo")
    model: Path | None = None  # None: the shipped default model, or an untrained stand-in without one
    steps: int | None = None  # None: the model's own default
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    frames: int | None = None  # None: two generation windows of the model


@dataclasses.dataclass
class DemoResult:
    out: Path
    num_frames: int
    fps: float
    trained: bool
    stage_seconds: dict[str, float]
    stage_cpu_seconds: dict[str, float]
    total_seconds: float
    total_cpu_seconds: float


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the Blender worker): on a shared machine it
    says what a stage costs when wall time is stretched by other jobs."""
    try:
        import resource
    except ImportError:  # Windows: this process only
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class StageClock:
    """Times named stages (wall and CPU seconds) and prints each as it ends."""

    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self.started, self.started_cpu = time.perf_counter(), _cpu_seconds()

    @contextlib.contextmanager
    def stage(self, name: str):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        yield
        self.seconds[name] = time.perf_counter() - start
        self.cpu_seconds[name] = _cpu_seconds() - start_cpu
        self.log(f"  {name:<14} {self.seconds[name]:6.1f} s  (CPU {self.cpu_seconds[name]:6.1f} s)")

    @property
    def total(self) -> float:
        return time.perf_counter() - self.started

    @property
    def total_cpu(self) -> float:
        return _cpu_seconds() - self.started_cpu


def default_num_frames(window: int, overlap: int) -> int:
    """Two generation windows sharing their overlap (2.5 s at the tiny-cpu model's 17 frames, 12 fps): the
    longest clip whose generation stays well inside the 5 minute budget on a 2-core CPU."""
    return 2 * window - overlap


def check_out_folder(out: Path) -> None:
    """Refuse to replace a folder that holds anything but an earlier demo's output."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder (it is created if missing)")
    if out.is_dir() and any(out.iterdir()) and not (out / DEMO_RECORD).is_file():
        raise InputError(f"--out {out} already holds files that are not a dimo demo's output; give an empty or new folder")


def load_demo_model(settings: DemoSettings, log: Callable[[str], None]):
    """(pipeline, description, trained): the given model, the shipped default, or an untrained tiny-cpu stand-in."""
    import torch
    from diffusers.utils import logging as diffusers_logging

    from dimo_engine.cli.model_args import DEFAULT_MODEL_DIR, resolve_device, resolve_dtype, resolve_model_path
    from dimo_engine.pipelines import load_pipeline

    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    dtype = None if dtype == torch.float32 else dtype  # checkpoints are float32: asking for it would only re-cast
    diffusers_logging.disable_progress_bar()
    if settings.model is None and not (DEFAULT_MODEL_DIR / "model_index.json").is_file():
        log(f"no default model is installed ({DEFAULT_MODEL_DIR} is empty): using an UNTRAINED tiny-cpu model, "
            f"so the DiMo frames are noise, not the character")
        pipe, description, trained = load_pipeline(None, device, dtype), "untrained tiny-cpu (random weights)", False
    else:
        path = resolve_model_path(settings.model)
        pipe, description, trained = load_pipeline(str(path), device, dtype), str(path), True
    pipe.set_progress_bar_config(disable=True)
    return pipe, description, trained


def choose_motion(seed: int) -> tuple[str, int]:
    """The first held-out whole-body motion of the test split for this seed: unseen family, unseen seed."""
    from dimo_engine.body.train_test_split import motion_split

    for family, motion_seed in motion_split("test", 256, seed):
        if family in DEMO_FAMILIES:
            return family, motion_seed
    raise AssertionError("the test split always cycles through every family")


def orbit_camera(joints: np.ndarray, num_frames: int, fps: float, width: int, height: int):
    """The phrase's camera, aimed at the middle of what the person covers and backed off just far enough
    that the person (joints (F, 52, 3), each frame seen by that frame's camera) stays in the image."""
    from blender_addon.core.camera_rigs import framing_extent
    from blender_addon.core.clip_views import subject_box
    from dimo_engine.camera import camera_path_from_phrase

    low, high = subject_box(joints, margin=0.0)
    target = 0.5 * (low + high)

    def camera(distance: float):
        return camera_path_from_phrase(CAMERA_PHRASE, num_frames=num_frames, fps=fps, width=width, height=height,
                                       distance=distance, target=target)

    near, far = 0.5, 50.0  # bisection: the person fills less of the image as the camera backs off
    for _ in range(30):
        middle = 0.5 * (near + far)
        near, far = (middle, far) if framing_extent(camera(middle), joints) > ORBIT_FILL else (near, middle)
    return camera(far)


def plan_demo_clips(pipe, num_frames: int, seed: int, body_model):
    """Two test-split clips of one motion: 0 = the driving character from a phone-like driving view; 1 =
    another character (its own appearance and body shape) from the reference still and the orbit camera."""
    from blender_addon.core.camera_rigs import RigView
    from dimo_engine.clip_plan import RenderSettings, plan_clip

    config = pipe.config
    fps, size = float(config.fps), int(config.height)
    settings = RenderSettings(clips=2, views=1, frames=num_frames, fps=fps, resolution=size, engine="workbench",
                              samples=8, split="test", seed=seed).validate()
    family, motion_seed = choose_motion(seed)
    driving = plan_clip(settings, 0, body_model, family, motion_seed)
    reference = plan_clip(settings, 1, body_model, family, motion_seed)
    # The reference still is the camera the model is told the reference image has; the worker renders
    # every view for the whole clip, and the clip format wants one view marked as the driving one.
    reference_still = pipe.default_reference_camera().take(np.zeros(num_frames, dtype=int), fps)
    orbit = orbit_camera(reference.arrays["joints"], num_frames, fps, int(config.width), int(config.height))
    reference.views = [RigView("reference", "driving", reference_still), RigView("orbit", "moving", orbit)]
    return settings, driving, reference, orbit


def render_plan(plan_dir: str) -> None:
    """Render a written plan with one fresh Blender worker; DemoRenderFailed with its log's end on failure."""
    log_path = os.path.join(plan_dir, "worker.log")
    with open(log_path, "w") as log:
        code = subprocess.run([sys.executable, "-m", "blender_addon.clip_renderer.worker", plan_dir],
                              stdout=subprocess.DEVNULL, stderr=log).returncode
    if code != 0:
        with open(log_path) as log:
            tail = log.read()[-3000:]
        raise DemoRenderFailed(f"{tail}\nthe Blender worker failed (exit code {code}) while rendering the demo clips")


def side_by_side_sheet(columns: list[np.ndarray], frame_indices, labels=SHEET_COLUMNS):
    """A PIL image: a label strip, then one row per chosen frame with the columns' frames side by side
    (each column uint8 (F, H, W, 3) of one size)."""
    from PIL import Image, ImageDraw

    height, width = columns[0].shape[1:3]
    sheet = Image.new("RGB", (width * len(columns), SHEET_HEADER_PX + height * len(frame_indices)), (30, 30, 30))
    draw = ImageDraw.Draw(sheet)
    for column, label in enumerate(labels):
        draw.text((column * width + 3, 2), label, fill=(230, 230, 230))
    for row, frame in enumerate(frame_indices):
        for column, frames in enumerate(columns):
            sheet.paste(Image.fromarray(frames[frame]), (column * width, SHEET_HEADER_PX + row * height))
    return sheet


def write_outputs(folder: Path, driving, reference, ground_truth, generated, camera, fps: float, record: dict) -> None:
    """Everything a person looks at, in `folder`: PNG sequences, MP4s, the sheet, the camera and demo.json."""
    from dimo_engine.camera import save_camera_path
    from dimo_engine.video_io import to_uint8, write_png, write_png_sequence, write_video

    from dimo_engine.layer_compositing import composite_layer

    # The model's frames are a character layer (RGBA, alpha = the person): written as they are, and over the
    # models' plain grey, beside the ground truth's person over the same grey, for the MP4s and the sheet.
    write_png_sequence(to_uint8(generated), folder / "dimo")
    generated = to_uint8(composite_layer(generated))
    truth_layer = to_uint8(composite_layer(ground_truth.astype(np.float32) / 255.0))
    for name, frames in (("driving", driving), ("ground_truth", ground_truth)):
        write_png_sequence(frames, folder / name)
    write_png(reference, folder / "reference.png")
    write_video(generated, folder / "dimo.mp4", fps=fps)
    write_video(np.concatenate([driving[..., :3], truth_layer, generated], axis=2), folder / "side_by_side.mp4", fps=fps)
    rows = np.unique(np.linspace(0, len(generated) - 1, min(SHEET_ROWS, len(generated))).round().astype(int))
    sheet = side_by_side_sheet([driving[..., :3], truth_layer, generated], rows)
    with atomic_write(folder / "sheet.png") as temporary:
        sheet.save(temporary)
    save_camera_path(camera, folder / "camera.json")
    record = {**record, "sheet": {"columns": list(SHEET_COLUMNS), "frames": rows.tolist(), "header_px": SHEET_HEADER_PX}}
    (folder / DEMO_RECORD).write_text(json.dumps(record, indent=1) + "\n")


def run_demo(settings: DemoSettings, log: Callable[[str], None] = print,
             on_progress: Callable | None = None) -> DemoResult:
    """The whole demo into `settings.out` (built in a hidden sibling folder, then swapped in whole)."""
    from dimo_engine.body import load_body_model
    from dimo_engine.clip_plan import write_plan
    from dimo_engine.clips import load_clip
    from dimo_engine.driving import encode_driving
    from dimo_engine.frame_windows import DEFAULT_OVERLAP
    from dimo_engine.character_height import body_height
    from dimo_engine.reenact import GenerationSettings, reenact

    out = Path(settings.out).expanduser()
    check_out_folder(out)
    generation = GenerationSettings.from_dict({"num_inference_steps": settings.steps, "seed": settings.seed}, "command line")
    if settings.frames is not None and not 2 <= settings.frames <= 1000:
        raise InputError(f"--frames is {settings.frames}; use 2 to 1000 frames")
    clock = StageClock(log)

    with clock.stage("load model"):
        pipe, model_description, trained = load_demo_model(settings, log)
    fps = float(pipe.config.fps)
    num_frames = settings.frames or default_num_frames(int(pipe.config.num_frames), DEFAULT_OVERLAP)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        with clock.stage("body model"):  # generated on a fresh machine's first run
            body_model = load_body_model()
        with clock.stage("plan clips"):
            render_settings, driving_plan, reference_plan, orbit = plan_demo_clips(pipe, num_frames, settings.seed, body_model)
            render_root = staging / ".render"
            plan_dir = write_plan(str(staging / ".plan"), str(render_root), render_settings, [driving_plan, reference_plan],
                                  body_model, "dimo-smplh-procedural-v1")
        with clock.stage("render"):
            render_plan(plan_dir)
        driving_clip = load_clip(render_root / "test" / "clip_000000")
        reference_clip = load_clip(render_root / "test" / "clip_000001")
        # Blender's render of the driving clip keeps the person's alpha, which finds the person exactly; a filmed
        # video without alpha goes through the keypoint locator instead (docs/default_model.md has both figures).
        driving = driving_clip.driving_view.frames()  # (F, H, W, 4) uint8
        # The character's picture with its alpha, as Blender renders a character over a transparent film.
        reference = reference_clip.views["reference"].frames([0])[0]  # (H, W, 4)
        ground_truth = reference_clip.views["orbit"].frames()  # (F, H, W, 4), alpha = the person

        with clock.stage("encode motion"):
            motion = encode_driving(pipe, driving, fps, source="the demo's driving clip")
        # The reference character's own height, as an artist gives theirs: the driving person's is another.
        if hasattr(pipe, "motion_at_height"):
            generation.character_height = round(body_height(reference_plan.arrays["betas"], body_model), 3)
        with clock.stage("generate"):
            generated = reenact(pipe, reference, motion, [orbit], reference_camera=pipe.default_reference_camera(),
                                settings=generation, on_progress=on_progress)[0]  # (F, H, W, 4) float RGBA layer
        with clock.stage("write"):
            record = {
                "model": model_description, "trained": trained, "camera_phrase": CAMERA_PHRASE,
                "motion": driving_clip.manifest["motion"], "num_frames": num_frames, "fps": fps,
                "driving_appearance_seed": driving_plan.appearance_seed,
                "reference_appearance_seed": reference_plan.appearance_seed,
                "steps": settings.steps, "seed": settings.seed, "device": str(pipe.device),
                "character_height": generation.character_height,
            }
            shutil.rmtree(render_root)
            shutil.rmtree(plan_dir)
            write_outputs(staging, driving, reference, ground_truth, generated, orbit, fps, record)
            # Only a complete result replaces an earlier demo's output.
            replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    total, total_cpu = clock.total, clock.total_cpu
    record_path = out / DEMO_RECORD
    record = json.loads(record_path.read_text())
    record.update(stage_seconds={k: round(v, 2) for k, v in clock.seconds.items()}, total_seconds=round(total, 2),
                  stage_cpu_seconds={k: round(v, 2) for k, v in clock.cpu_seconds.items()},
                  total_cpu_seconds=round(total_cpu, 2))
    write_json_atomic(record_path, record)
    return DemoResult(out, num_frames, fps, trained, dict(clock.seconds), dict(clock.cpu_seconds), total, total_cpu)
