""""Render driving clip": a quick Workbench render of the scene's own animated character, seen from a
front camera in the character frame, packed as a zip of PNG frames that the engine accepts as `driving`.

Rendering must run on Blender's main thread, so the clip is rendered one frame per step
(`iter_render_driving_clip`), which a modal operator advances between UI events.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import zipfile
from pathlib import Path

from . import takes
from .core.atomic_io import atomic_write

# A 50 mm lens on a 36 mm sensor sees about 40 degrees; at 4.5 m that frames a 2 m person with margin.
FRONT_CAMERA_DISTANCE_M = 4.5
FRONT_CAMERA_HEIGHT_M = 1.0
# A zip of frames carries no frame rate; the engine reads image sequences at 24 fps, so the clip is
# rendered at 24 fps (sub-frames when the scene runs at another rate) to keep the scene's timing.
ENGINE_SEQUENCE_FPS = 24.0


@contextlib.contextmanager
def temporary_settings(*assignments):
    """Set (owner, attribute, value) triples and restore the old values afterwards, whatever happens."""
    saved = []
    try:
        for owner, attribute, value in assignments:
            saved.append((owner, attribute, getattr(owner, attribute)))
            setattr(owner, attribute, value)
        yield
    finally:
        for owner, attribute, value in reversed(saved):
            setattr(owner, attribute, value)


def front_camera(scene, anchor_obj, distance: float = FRONT_CAMERA_DISTANCE_M, height: float = FRONT_CAMERA_HEIGHT_M):
    """A temporary camera in front of the character (it faces -Y in its frame) looking at its chest."""
    import bpy
    from mathutils import Matrix, Vector

    from .camera_export import character_frame_to_world

    world_from_character = Matrix(character_frame_to_world(anchor_obj).tolist())
    eye = world_from_character @ Vector((0.0, -distance, height))
    target = world_from_character @ Vector((0.0, 0.0, height))
    camera_data = bpy.data.cameras.new("DiMo Driving Camera")
    camera_data.lens = 50.0
    camera_obj = bpy.data.objects.new("DiMo Driving Camera", camera_data)
    scene.collection.objects.link(camera_obj)
    rotation = (target - eye).to_track_quat("-Z", "Y")
    camera_obj.matrix_world = Matrix.Translation(eye) @ rotation.to_matrix().to_4x4()
    return camera_obj


def _remove_object(obj) -> None:
    import bpy

    data = obj.data
    bpy.data.objects.remove(obj)
    if data is not None and data.users == 0:
        bpy.data.cameras.remove(data)


def next_free_path(folder: Path, stem: str, suffix: str) -> Path:
    """`folder/stem_NNN.suffix` with the first number not used yet, so earlier renders stay."""
    folder.mkdir(parents=True, exist_ok=True)
    number = 1
    while (folder / f"{stem}_{number:03d}{suffix}").exists():
        number += 1
    return folder / f"{stem}_{number:03d}{suffix}"


def iter_render_driving_clip(scene, anchor_obj, frame_start: int, frame_end: int, output: Path, size: int = 128):
    """Render frames frame_start..frame_end at 24 fps, one per step (yields (done, total)); returns the zip path."""
    import bpy

    if anchor_obj is None:
        raise ValueError("No character anchor is set; pick the character's armature or root empty in the DiMo panel.")
    if frame_end < frame_start:
        raise ValueError(f"The frame range {frame_start}-{frame_end} is empty; set an end frame after the start frame.")
    scene_fps = scene.render.fps / scene.render.fps_base
    step = scene_fps / ENGINE_SEQUENCE_FPS  # scene frames per rendered frame
    total = int(math.floor((frame_end - frame_start) / step + 1e-6)) + 1
    frames_dir = Path(tempfile.mkdtemp(prefix="dimo-driving-"))
    render = scene.render
    original_frame = scene.frame_current
    camera_obj = front_camera(scene, anchor_obj)
    try:
        with temporary_settings(
            (render, "engine", "BLENDER_WORKBENCH"),
            (render, "resolution_x", size),
            (render, "resolution_y", size),
            (render, "resolution_percentage", 100),
            (render, "pixel_aspect_x", 1.0),
            (render, "pixel_aspect_y", 1.0),
            (render, "film_transparent", False),
            (render, "use_file_extension", True),
            (render.image_settings, "file_format", "PNG"),
            (render.image_settings, "color_mode", "RGB"),
            (render, "filepath", render.filepath),
            (scene, "camera", camera_obj),
        ):
            for index in range(total):
                time = frame_start + index * step
                scene.frame_set(int(math.floor(time)), subframe=time - math.floor(time))
                render.filepath = str(frames_dir / takes.frame_file_name(index))
                bpy.ops.render.render(write_still=True)
                yield index + 1, total
        output = Path(output)
        with atomic_write(output) as partial, zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
            for index in range(total):
                name = takes.frame_file_name(index)
                archive.write(frames_dir / name, arcname=name)
    finally:
        scene.frame_set(original_frame)
        _remove_object(camera_obj)
        shutil.rmtree(frames_dir, ignore_errors=True)
    return output
