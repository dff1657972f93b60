""""Render reference from camera": render the selected character alone from a camera with the scene's
own render settings, and record that camera (in the character frame) as the reference camera.
"""

from __future__ import annotations

from pathlib import Path

from . import takes
from .core.atomic_io import atomic_write
from .driving_render import next_free_path, temporary_settings

# Object types that put something in the image; lights, cameras and empties stay as they are.
GEOMETRY_TYPES = {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME", "GREASEPENCIL", "GPENCIL"}


def _character_objects(selected_objects) -> set:
    """The selected objects and everything parented under them (an armature's meshes)."""
    keep = set()
    for obj in selected_objects:
        keep.add(obj)
        keep.update(obj.children_recursive)
    return keep


def character_height(selected_objects, depsgraph) -> float:
    """How tall the selected character stands (the selection and everything parented under it, as posed now): the
    height of its geometry's world bounding box, in scene units; raises ValueError when the selection has none."""
    from mathutils import Vector

    heights = []
    for obj in _character_objects(selected_objects):
        if obj.type not in GEOMETRY_TYPES:
            continue
        evaluated = obj.evaluated_get(depsgraph)
        heights += [(evaluated.matrix_world @ Vector(corner)).z for corner in evaluated.bound_box]
    if not heights:
        raise ValueError("The selection holds no visible geometry; select the character (its mesh or armature) first.")
    return max(heights) - min(heights)


def render_reference(scene, camera_obj, selected_objects, anchor_obj, output_dir: Path | None = None) -> tuple[Path, Path]:
    """Render the character from `camera_obj` at the current frame; returns (image path, camera path file)."""
    import bpy

    from .camera_export import export_camera_path
    from .core.camera_path import save_camera_path

    if camera_obj is None or camera_obj.type != "CAMERA":
        raise ValueError("There is no camera to render the reference from; set the scene's active camera.")
    if anchor_obj is None:
        raise ValueError("No character anchor is set; pick the character's armature or root empty in the DiMo panel.")
    character = _character_objects(selected_objects)
    if not any(obj.type in GEOMETRY_TYPES for obj in character):
        raise ValueError("The selection holds no visible geometry; select the character (its mesh or armature) first.")
    output_dir = Path(output_dir) if output_dir is not None else takes.dimo_root() / "reference"
    image_path = next_free_path(output_dir, "reference", ".png")
    camera_file = image_path.with_suffix(".json")
    hidden = [
        (obj, "hide_render", True)
        for obj in scene.objects
        if obj.type in GEOMETRY_TYPES and obj not in character and not obj.hide_render
    ]
    render = scene.render
    with atomic_write(image_path) as partial, temporary_settings(
        *hidden,
        (render, "use_file_extension", False),
        (render.image_settings, "file_format", "PNG"),
        (render, "film_transparent", True),  # alpha = the character: the engine finds it and measures its height
        (render.image_settings, "color_mode", "RGBA"),
        (render, "filepath", str(partial)),
        (scene, "camera", camera_obj),
    ):
        bpy.ops.render.render(write_still=True)
    frame = scene.frame_current
    camera_path = export_camera_path(scene, camera_obj, anchor_obj, frame, frame)
    save_camera_path(camera_path, camera_file)
    return image_path, camera_file
