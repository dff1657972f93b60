"""A small shot for the add-on tests: enabled add-on, saved blend file, anchor, camera, reference and
driving files, and preferences pointing at a given engine."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np


def enable_addon():
    import bpy  # first: it puts Blender's own modules (addon_utils) on sys.path
    import addon_utils

    if "blender_addon" not in bpy.context.preferences.addons:
        addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    return bpy.context.preferences.addons["blender_addon"].preferences


def make_shot(tmp_path: Path, frame_end: int = 5, name: str = "Shot"):
    """A fresh scene made active, saved as tmp_path/shot.blend; returns the scene."""
    import bpy

    scene = bpy.data.scenes.new(name)
    bpy.context.window.scene = scene
    scene.frame_start, scene.frame_end = 1, frame_end
    scene.render.resolution_x, scene.render.resolution_y = 96, 64
    anchor = bpy.data.objects.new("Anchor", None)
    anchor.location = (2.0, 1.0, 0.0)
    anchor.rotation_euler = (0.0, 0.0, math.radians(30))
    scene.collection.objects.link(anchor)
    camera = bpy.data.objects.new("Cam", bpy.data.cameras.new("Cam"))
    camera.location = (2.0, -6.0, 1.5)
    camera.rotation_euler = (math.radians(85), 0.0, 0.0)
    scene.collection.objects.link(camera)
    scene.camera = camera
    reference = tmp_path / "reference.png"
    iio.imwrite(reference, np.full((64, 64, 3), 128, dtype=np.uint8))
    driving = tmp_path / "driving.mp4"
    driving.write_bytes(b"not decoded by the fake engine")
    settings = scene.dimo
    settings.anchor = anchor
    settings.reference_image = str(reference)
    settings.driving_video = str(driving)
    settings.num_inference_steps = 2
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "shot.blend"))
    return scene


def point_preferences_at(url: str, token: str):
    prefs = enable_addon()
    prefs.connection = "URL"
    prefs.engine_url = url
    prefs.token = token
    prefs.token_file = ""
    return prefs
