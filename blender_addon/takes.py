"""Generated takes: folders `//dimo/<shot>/<take>/####.png` that are never overwritten, loaded as
image sequences on the camera background (and, on request, an image plane or an object's material),
with a take list to switch between them.

The folder functions use the standard library only, so a background job can commit a take; the
loading functions use bpy and run on the main thread.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

TAKE_PATTERN = re.compile(r"^take_(\d{3,})$")
FRAME_DIGITS = 4
MATERIAL_PREFIX = "DiMo "
PLANE_PREFIX = "DiMo Plane "


def safe_name(name: str) -> str:
    """A name usable as one folder level on every OS."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    return cleaned or "shot"


def frame_file_name(index: int) -> str:
    """File name of the take's frame `index` (0-based); Blender's sequences number from 1."""
    return f"{index + 1:0{FRAME_DIGITS}d}.png"


def dimo_root() -> Path:
    """`//dimo` next to the saved blend file."""
    import bpy

    if not bpy.data.filepath:
        raise ValueError("The blend file is not saved; save it first, takes are stored next to it in //dimo/.")
    return Path(bpy.path.abspath("//dimo"))


def existing_takes(shot_dir: Path) -> list[str]:
    if not shot_dir.is_dir():
        return []
    names = [entry.name for entry in shot_dir.iterdir() if entry.is_dir() and TAKE_PATTERN.match(entry.name)]
    return sorted(names, key=lambda name: int(TAKE_PATTERN.match(name).group(1)))


def new_partial_dir(shot_dir: Path) -> Path:
    """A private folder to download a take into; it only becomes a take when complete."""
    shot_dir.mkdir(parents=True, exist_ok=True)
    partial = shot_dir / f".take_{uuid.uuid4().hex[:12]}.partial"
    partial.mkdir()
    return partial


def commit_take(partial_dir: Path, shot_dir: Path) -> Path:
    """Turn a complete partial folder into the next free `take_NNN`, never replacing an existing take."""
    taken = existing_takes(shot_dir)
    number = int(TAKE_PATTERN.match(taken[-1]).group(1)) + 1 if taken else 1
    while True:
        final = shot_dir / f"take_{number:03d}"
        try:
            # mkdir is the reservation: it fails if another take (or process) got this number first,
            # and the rename then replaces only our own empty folder.
            final.mkdir()
        except FileExistsError:
            number += 1
            continue
        os.replace(partial_dir, final)
        return final


def spread_over_scene_frames(generated: list[Path], num_scene_frames: int, folder: Path) -> int:
    """Name the engine's frames after the scene frames they cover, `0001.png` ... one per scene frame.

    The engine works at its model's fps (12 by default), the scene at its own: each scene frame shows
    the generated frame nearest in time, so the take spans exactly the scene range. A one-frame range
    keeps every generated frame. Returns the number of frames in the take.
    """
    if not generated:
        raise ValueError(f"No frames were generated for {folder}; generate again.")
    if num_scene_frames <= 1:
        sources = list(range(len(generated)))
    else:
        stretch = (len(generated) - 1) / (num_scene_frames - 1)
        sources = [int(index * stretch + 0.5) for index in range(num_scene_frames)]  # nearest, ties forward
    for index, source in enumerate(sources):
        shutil.copyfile(generated[source], folder / frame_file_name(index))
    for path in generated:
        path.unlink()
    return len(sources)


def discard_partial(partial_dir: Path) -> None:
    if partial_dir.is_dir() and partial_dir.name.endswith(".partial"):
        for entry in partial_dir.iterdir():
            entry.unlink()
        partial_dir.rmdir()


# --- loading into Blender (main thread) ----------------------------------------------------


def _relative(path: Path) -> str:
    import bpy

    try:
        return bpy.path.relpath(str(path))
    except ValueError:  # another drive on Windows
        return str(path)


def _configure_image_user(image_user, frame_start: int, num_frames: int) -> None:
    image_user.frame_start = frame_start
    image_user.frame_duration = num_frames
    image_user.frame_offset = 0
    image_user.use_auto_refresh = True


def load_image_sequence(take_dir: Path, name: str):
    """Load the take's frames as one image datablock with source SEQUENCE."""
    import bpy

    first = Path(take_dir) / frame_file_name(0)
    if not first.is_file():
        raise ValueError(f"The take folder {take_dir} has no {first.name}; generate the take again.")
    image = bpy.data.images.load(_relative(first), check_existing=False)
    image.source = "SEQUENCE"
    image.alpha_mode = "STRAIGHT"  # RGBA character layer: shown over the camera's view of the scene
    image.name = name
    return image


def set_camera_background(camera_obj, image, frame_start: int, num_frames: int):
    """Show `image` as the camera's DiMo background image (reusing the slot of an earlier take)."""
    camera = camera_obj.data
    background = next(
        (bg for bg in camera.background_images if bg.image is not None and bg.image.name.startswith(MATERIAL_PREFIX)),
        None,
    )
    if background is None:
        background = camera.background_images.new()
    background.source = "IMAGE"
    background.image = image
    background.alpha = 1.0
    background.display_depth = "FRONT"
    _configure_image_user(background.image_user, frame_start, num_frames)
    camera.show_background_images = True
    return background


def _take_material(material_name: str, image, frame_start: int, num_frames: int, emission: bool):
    import bpy

    material = bpy.data.materials.get(material_name) or bpy.data.materials.new(material_name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    texture = nodes.get("DiMo Take")
    if texture is None:
        nodes.clear()
        output = nodes.new("ShaderNodeOutputMaterial")
        shader = nodes.new("ShaderNodeEmission" if emission else "ShaderNodeBsdfPrincipled")
        texture = nodes.new("ShaderNodeTexImage")
        texture.name = "DiMo Take"
        links.new(texture.outputs["Color"], shader.inputs["Color" if emission else "Base Color"])
        # The take is a character layer (alpha = the person): the scene shows through everywhere else.
        if emission:
            transparent = nodes.new("ShaderNodeBsdfTransparent")
            mix = nodes.new("ShaderNodeMixShader")
            links.new(texture.outputs["Alpha"], mix.inputs["Fac"])
            links.new(transparent.outputs[0], mix.inputs[1])
            links.new(shader.outputs[0], mix.inputs[2])
            links.new(mix.outputs[0], output.inputs["Surface"])
        else:
            links.new(texture.outputs["Alpha"], shader.inputs["Alpha"])
            links.new(shader.outputs[0], output.inputs["Surface"])
    if hasattr(material, "surface_render_method"):  # Blender 4.2+: blended transparency in EEVEE and the viewport
        material.surface_render_method = "BLENDED"
    texture.image = image
    _configure_image_user(texture.image_user, frame_start, num_frames)
    return material


def image_plane(scene, camera_obj, image, frame_start: int, num_frames: int, distance: float = 5.0):
    """A plane parented to the camera at `distance` that exactly fills its view, textured with the take."""
    import bpy

    name = PLANE_PREFIX + camera_obj.name
    # view_frame gives the frame corners on the z = -1-ish plane for the scene's size, fit and shift
    corners = [corner * (distance / -corner.z) for corner in camera_obj.data.view_frame(scene=scene)]
    # corners: top-right, bottom-right, bottom-left, top-left
    plane = bpy.data.objects.get(name)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([tuple(c) for c in corners], [], [(3, 2, 1, 0)])
    uv_layer = mesh.uv_layers.new(name="UVMap")
    uv_by_corner = {0: (1.0, 1.0), 1: (1.0, 0.0), 2: (0.0, 0.0), 3: (0.0, 1.0)}
    for loop in mesh.loops:
        uv_layer.data[loop.index].uv = uv_by_corner[loop.vertex_index]
    if plane is None:
        plane = bpy.data.objects.new(name, mesh)
        scene.collection.objects.link(plane)
    else:
        old_mesh, plane.data = plane.data, mesh
        if old_mesh.users == 0:
            bpy.data.meshes.remove(old_mesh)
    plane.parent = camera_obj
    plane.matrix_parent_inverse.identity()
    plane.matrix_basis.identity()
    material = _take_material(MATERIAL_PREFIX + "Plane " + camera_obj.name, image, frame_start, num_frames, emission=True)
    mesh.materials.append(material)
    return plane


def texture_object(obj, camera_obj, image, frame_start: int, num_frames: int):
    """Put the take on `obj` as its first material's base colour."""
    material = _take_material(MATERIAL_PREFIX + camera_obj.name, image, frame_start, num_frames, emission=False)
    if obj.data is None or not hasattr(obj.data, "materials"):
        raise ValueError(f"The object {obj.name} cannot hold a material; choose a mesh for the take texture.")
    if len(obj.data.materials) == 0:
        obj.data.materials.append(material)
    else:
        obj.data.materials[0] = material
    return material


def load_take(scene, camera_obj, take_dir: Path, frame_start: int, num_frames: int, use_image_plane=False, texture_obj=None):
    """Load a committed take for `camera_obj` and record it in the scene's take list; returns the take item."""
    take_dir = Path(take_dir)
    shot, take = take_dir.parent.name, take_dir.name
    image = load_image_sequence(take_dir, f"{MATERIAL_PREFIX}{shot} {take}")
    set_camera_background(camera_obj, image, frame_start, num_frames)
    if use_image_plane:
        image_plane(scene, camera_obj, image, frame_start, num_frames)
    if texture_obj is not None:
        texture_object(texture_obj, camera_obj, image, frame_start, num_frames)
    settings = scene.dimo
    item = settings.takes.add()
    item.name = f"{shot}/{take}"
    item.shot, item.take = shot, take
    item.directory = _relative(take_dir)
    item.camera = camera_obj.name
    item.image = image.name
    item.frame_start, item.num_frames = frame_start, num_frames
    settings.active_take_index = len(settings.takes) - 1
    return item


def switch_take(scene, index: int):
    """Show take `index` of the take list on its camera (and on the plane/material it used)."""
    import bpy

    settings = scene.dimo
    if not 0 <= index < len(settings.takes):
        raise ValueError(f"There is no take number {index + 1}; pick one from the take list.")
    item = settings.takes[index]
    camera_obj = bpy.data.objects.get(item.camera)
    if camera_obj is None or camera_obj.type != "CAMERA":
        raise ValueError(f"The camera {item.camera} of take {item.name} is gone; generate a new take.")
    image = bpy.data.images.get(item.image)
    if image is None:
        image = load_image_sequence(Path(bpy.path.abspath(item.directory)), f"{MATERIAL_PREFIX}{item.shot} {item.take}")
        item.image = image.name
    set_camera_background(camera_obj, image, item.frame_start, item.num_frames)
    for material_name in (MATERIAL_PREFIX + "Plane " + camera_obj.name, MATERIAL_PREFIX + camera_obj.name):
        material = bpy.data.materials.get(material_name)
        if material is not None and material.node_tree and "DiMo Take" in material.node_tree.nodes:
            node = material.node_tree.nodes["DiMo Take"]
            node.image = image
            _configure_image_user(node.image_user, item.frame_start, item.num_frames)
    settings.active_take_index = index
    return item
