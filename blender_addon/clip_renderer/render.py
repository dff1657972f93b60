"""Render one view frame to RGBA: the background in RGB and the person mask in alpha.

Blender's transparent film gives a clean anti-aliased person mask only when nothing else is
rendered, so each frame is rendered as a person pass (transparent film, set hidden) composited
over a set pass (person hidden). A static camera renders its set pass once per view, so a static
view costs one render per frame; the price is that the person casts no shadow on the set.
"""

from __future__ import annotations

import os
import tempfile

import bpy
import numpy as np

ENGINES = {"cycles": "CYCLES", "workbench": "BLENDER_WORKBENCH"}


def configure_render(scene, engine: str, samples: int, width: int, height: int, denoise: bool = False, threads: int = 0) -> None:
    """Set engine, size and colour management so vertex colours come out as given (Standard view)."""
    scene.render.engine = ENGINES[engine]
    scene.render.resolution_x = int(width)
    scene.render.resolution_y = int(height)
    scene.render.resolution_percentage = 100
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.render.use_motion_blur = False
    if threads:
        scene.render.threads_mode = "FIXED"
        scene.render.threads = int(threads)
    if engine == "cycles":
        scene.cycles.device = "CPU"
        scene.cycles.samples = int(samples)
        scene.cycles.use_adaptive_sampling = False
        scene.cycles.use_denoising = bool(denoise)
        scene.cycles.seed = 0
        scene.cycles.max_bounces = 4
        scene.cycles.use_light_tree = False
    else:
        shading = scene.display.shading
        shading.color_type = "VERTEX"
        scene.display.render_aa = "8" if samples >= 8 else ("5" if samples >= 5 else "FXAA")


class ViewRenderer:
    """Renders frames of one scene, person over set, reading results back as arrays."""

    def __init__(self, scene, person_objects, set_objects):
        self.scene = scene
        self.person_objects = list(person_objects)
        self.set_objects = list(set_objects)
        self._folder = tempfile.mkdtemp(prefix="dimo_render_")

    def _render(self, name: str, film_transparent: bool) -> np.ndarray:
        path = os.path.join(self._folder, f"{name}.png")
        self.scene.render.filepath = path
        self.scene.render.film_transparent = film_transparent
        bpy.ops.render.render(write_still=True)
        image = bpy.data.images.load(path)
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
        bpy.data.images.remove(image)
        os.remove(path)
        return pixels.reshape(height, width, 4)[::-1]  # Blender stores rows bottom-up

    def _show(self, objects, visible: bool) -> None:
        for obj in objects:
            obj.hide_render = not visible

    def render_person(self) -> np.ndarray:
        """(H, W, 4) float straight-alpha person on transparent film."""
        self._show(self.set_objects, False)
        self._show(self.person_objects, True)
        return self._render("person", True)

    def render_set(self) -> np.ndarray:
        """(H, W, 3) float set without the person."""
        self._show(self.person_objects, False)
        self._show(self.set_objects, True)
        rgb = self._render("set", False)[..., :3]
        self._show(self.person_objects, True)
        self.last_set_rgb = rgb  # the background plate of the latest frame, for benchmark clips
        return rgb

    @staticmethod
    def composite(person: np.ndarray, set_rgb: np.ndarray) -> np.ndarray:
        """(H, W, 4) uint8: person over set in RGB, person coverage in alpha."""
        alpha = person[..., 3:4]
        rgb = person[..., :3] * alpha + set_rgb * (1.0 - alpha)
        rgba = np.concatenate([rgb, alpha], axis=-1)
        return np.clip(np.rint(rgba * 255.0), 0, 255).astype(np.uint8)

    def close(self) -> None:
        try:
            os.rmdir(self._folder)
        except OSError:
            pass


def render_view(renderer: ViewRenderer, camera_obj, camera_path, frames):
    """Yield (frame_index, rgba uint8 (H,W,4)) for each scene frame in `frames` seen by `camera_obj`;
    a generator so a modal operator can render one frame per timer tick."""
    scene = renderer.scene
    scene.camera = camera_obj
    static = bool(np.allclose(camera_path.world_to_camera, camera_path.world_to_camera[:1]) and np.allclose(camera_path.K, camera_path.K[:1]))
    set_rgb = None
    for frame_index, frame in enumerate(frames):
        scene.frame_set(int(frame))
        if set_rgb is None or not static:
            set_rgb = renderer.render_set()
        yield frame_index, renderer.composite(renderer.render_person(), set_rgb)
