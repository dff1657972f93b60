"""Blender camera <-> camera path file: export a scene camera over a frame range into the character
frame given by an anchor object, and import a camera path back as a keyed Blender camera.

Intrinsics follow Blender's own view plane (lens, sensor size and fit, shift, render size and
percentage, pixel aspect), so a point projected with the exported K and world_to_camera lands on
the pixel `bpy_extras.object_utils.world_to_camera_view` gives. That holds for a camera whose
world matrix is sheared too (a rotated child of a non-uniformly scaled parent): Blender views
through the matrix with only its scale normalised, and that projection factors exactly into a
K with skew times a rigid world_to_camera (`exact_projection`). What no K can express (an
orthographic or panoramic camera, a mirrored one) is refused with the camera's name and the fix.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from .core.camera_path import OPENCV_TO_BLENDER_CAMERA, CameraPath, validate_camera_path

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


def rq_decomposition(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(upper-triangular U with a positive diagonal, orthogonal Q) with U @ Q == matrix (3, 3)."""
    flip = np.flipud(np.eye(3))
    q, r = np.linalg.qr((flip @ matrix).T)
    upper, orthogonal = flip @ r.T @ flip, flip @ q.T
    signs = np.diag(np.sign(np.diag(upper)))
    return upper @ signs, signs @ orthogonal


def exact_projection(K_blender: np.ndarray, camera_matrix_world: np.ndarray, world_from_character: np.ndarray,
                     name: str) -> tuple[np.ndarray, np.ndarray]:
    """(K, world_to_camera) projecting the character frame exactly as Blender does through this camera.

    Blender views through the camera's world matrix with each axis normalised (its scale gone, any
    shear kept), so character -> camera is affine, not rigid. K_blender @ that affine map is a 3x4
    projection whose left 3x3 factors (RQ) into an upper-triangular K (with skew, when sheared)
    times a rotation: the same pixels from a rigid camera. Without shear this is K_blender itself.
    """
    normalised = np.array(camera_matrix_world, dtype=np.float64)
    normalised[:3, :3] /= np.linalg.norm(normalised[:3, :3], axis=0)
    camera_from_character = OPENCV_TO_BLENDER_CAMERA @ np.linalg.inv(normalised) @ world_from_character
    projection = K_blender @ camera_from_character[:3]  # (3, 4)
    upper, rotation = rq_decomposition(projection[:, :3])
    if np.linalg.det(rotation) < 0:
        raise ValueError(f"camera '{name}' is mirrored (a negative scale on it or a parent), which no camera file "
                         f"can hold; make the scale positive, e.g. rotate by 180 degrees instead")
    depth_scale = upper[2, 2]  # K's last row must be (0, 0, 1): divide it out of the whole projection
    K = upper / depth_scale
    K[1, 0] = K[2, 0] = K[2, 1] = 0.0
    if abs(K[0, 1]) < 1e-6 * K[0, 0]:  # Blender keeps matrices in float32: ~1e-7 of noise
        K[0, 1] = 0.0  # no shear: keep the file's skew exactly zero (the importer refuses skew above 1e-6)
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = rotation
    world_to_camera[:3, 3] = np.linalg.solve(K, projection[:, 3] / depth_scale)
    return K, world_to_camera


def _rigid(matrix_world: Matrix) -> np.ndarray:
    """A world matrix with its scale removed (location and rotation kept), as a (4, 4) array."""
    location, rotation, _scale = matrix_world.decompose()
    return np.array(Matrix.LocRotScale(location, rotation, None))


def render_size(scene) -> tuple[int, int]:
    """Output image size in pixels, as Blender computes it (integer percentage scaling)."""
    render = scene.render
    return (render.resolution_x * render.resolution_percentage // 100,
            render.resolution_y * render.resolution_percentage // 100)


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


_CAMERA_TYPES = {"ORTHO": "orthographic", "PANO": "panoramic"}


def intrinsics_from_blender(camera_data, scene, name: str | None = None) -> np.ndarray:
    """OpenCV K (3, 3) of a perspective Blender camera in the scene's output pixels.

    Mirrors Blender's view plane: the fitted sensor side spans `viewfac` pixels (the width for a
    horizontal fit, the pixel-aspect-corrected height for a vertical one) and shift moves the
    view plane by shift * viewfac pixels. `name` is the camera object's, for errors.
    """
    if camera_data.type != "PERSP":
        kind = _CAMERA_TYPES.get(camera_data.type, camera_data.type.lower())
        raise ValueError(f"camera '{name or camera_data.name}' is {kind}, which a camera path (a pinhole K) cannot "
                         f"hold; set its Type to Perspective in the camera's properties")
    width, height = render_size(scene)
    aspect_x, aspect_y = scene.render.pixel_aspect_x, scene.render.pixel_aspect_y
    y_correction = aspect_y / aspect_x
    fit = camera_data.sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if aspect_x * width >= aspect_y * height else "VERTICAL"
        sensor_size = camera_data.sensor_width  # AUTO always measures the sensor width
    else:
        sensor_size = camera_data.sensor_width if fit == "HORIZONTAL" else camera_data.sensor_height
    viewfac = width if fit == "HORIZONTAL" else y_correction * height
    fx = camera_data.lens / sensor_size * viewfac
    fy = fx / y_correction
    cx = width / 2.0 - camera_data.shift_x * viewfac
    cy = height / 2.0 + camera_data.shift_y * viewfac / y_correction
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def character_frame_to_world(anchor_obj) -> np.ndarray:
    """(4, 4) character frame -> Blender world: the anchor's world matrix without scale (identity if none)."""
    return np.eye(4) if anchor_obj is None else _rigid(anchor_obj.matrix_world)


def _depsgraph(scene):
    """The evaluated state of `scene`: after frame_set, animation, parents and constraints are always
    applied there, while the original objects are only updated for the window's scene."""
    if scene == bpy.context.scene:
        return bpy.context.evaluated_depsgraph_get()
    return scene.view_layers[0].depsgraph


def _evaluated(obj, depsgraph):
    return None if obj is None else obj.evaluated_get(depsgraph)


def export_camera_path(scene, camera_obj, anchor_obj=None, frame_start: int | None = None,
                       frame_end: int | None = None) -> CameraPath:
    """The camera path of `camera_obj` over frames frame_start..frame_end (inclusive, default the
    scene range), in the character frame of `anchor_obj` at frame_start (Blender world if None)."""
    if camera_obj is None or camera_obj.type != "CAMERA":
        raise ValueError(f"object '{getattr(camera_obj, 'name', None)}' is not a camera; pick a camera object")
    frame_start = scene.frame_start if frame_start is None else int(frame_start)
    frame_end = scene.frame_end if frame_end is None else int(frame_end)
    if frame_end < frame_start:
        raise ValueError(f"frame range {frame_start}..{frame_end} is empty; set an end frame after the start frame")
    width, height = render_size(scene)
    original_frame = scene.frame_current
    frames = list(range(frame_start, frame_end + 1))
    Ks, world_to_cameras = [], []
    try:
        scene.frame_set(frame_start)
        depsgraph = _depsgraph(scene)
        world_from_character = character_frame_to_world(_evaluated(anchor_obj, depsgraph))
        for frame in frames:
            scene.frame_set(frame)
            camera_state = _evaluated(camera_obj, depsgraph)
            K, world_to_camera = exact_projection(intrinsics_from_blender(camera_state.data, scene, camera_obj.name),
                                                  np.array(camera_state.matrix_world), world_from_character,
                                                  camera_obj.name)
            Ks.append(K)
            world_to_cameras.append(world_to_camera)
    finally:
        scene.frame_set(original_frame)
    world_to_camera = np.stack(world_to_cameras)
    world_to_camera[:, 3] = (0.0, 0.0, 0.0, 1.0)  # exact, not 1 - 1e-17
    camera_path = CameraPath(width=width, height=height, fps=scene_fps(scene), frames=np.array(frames),
                             K=np.stack(Ks), world_to_camera=world_to_camera)
    return validate_camera_path(camera_path, source=f"camera '{camera_obj.name}'")


def _apply_render_settings(camera_path: CameraPath, scene) -> None:
    """Make the scene's output size, pixel aspect and fps those of the camera path."""
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = camera_path.width, camera_path.height, 100
    # Non-square pixels: Blender keeps both aspects >= 1 and only their ratio matters (fy / fx = x / y).
    ratio = float(camera_path.K[0, 1, 1] / camera_path.K[0, 0, 0])
    render.pixel_aspect_x, render.pixel_aspect_y = (ratio, 1.0) if ratio >= 1.0 else (1.0, 1.0 / ratio)
    fps = float(camera_path.fps)
    render.fps = max(1, round(fps))
    render.fps_base = render.fps / fps


def import_camera_path(camera_path: CameraPath, scene, anchor_obj=None, name: str = "DiMo Camera",
                       apply_render_settings: bool = True):
    """Create a camera object keyed on every frame of `camera_path` (placed in the character frame of
    `anchor_obj` at the path's first frame) and return it.

    With `apply_render_settings` the scene's resolution, pixel aspect and fps are set from the path,
    so exporting the new camera gives the same path back. Without, the scene keeps its own output
    size and the camera sees the same view scaled to it (exact when the aspect ratios agree). Uses a
    horizontal sensor fit.
    """
    validate_camera_path(camera_path, source=f"camera path for '{name}'")
    skewed = np.abs(camera_path.K[:, 0, 1]) > 1e-6 * camera_path.K[:, 0, 0]
    if skewed.any():
        raise ValueError(f"camera path for '{name}' has a skewed K at frame {int(camera_path.frames[np.argmax(skewed)])} "
                         f"(it came from a sheared camera), which a Blender camera cannot hold; import it under the "
                         f"same sheared parent by hand, or export the camera without the non-uniform parent scale")
    if apply_render_settings:
        _apply_render_settings(camera_path, scene)
    width, height = render_size(scene)
    y_correction = scene.render.pixel_aspect_y / scene.render.pixel_aspect_x

    camera_data = bpy.data.cameras.new(name)
    camera_data.sensor_fit = "HORIZONTAL"
    camera_obj = bpy.data.objects.new(name, camera_data)
    scene.collection.objects.link(camera_obj)
    camera_obj.rotation_mode = "XYZ"

    original_frame = scene.frame_current
    try:
        scene.frame_set(int(camera_path.frames[0]))
        world_from_character = character_frame_to_world(_evaluated(anchor_obj, _depsgraph(scene)))
    finally:
        scene.frame_set(original_frame)
    far = 10.0
    previous_euler = None
    for frame, K, world_to_camera in zip(camera_path.frames, camera_path.K, camera_path.world_to_camera):
        frame = int(frame)
        # Inverse of intrinsics_from_blender with a horizontal fit (viewfac = width), in image fractions
        # so a scene rendering the same view at another size (same aspect) gets the same camera.
        fx, cx, cy = K[0, 0] / camera_path.width, K[0, 2] / camera_path.width, K[1, 2] / camera_path.height
        camera_data.lens = fx * camera_data.sensor_width
        camera_data.shift_x = 0.5 - cx
        camera_data.shift_y = (cy - 0.5) * height * y_correction / width
        for data_path in ("lens", "shift_x", "shift_y"):
            camera_data.keyframe_insert(data_path, frame=frame)

        world_from_camera = Matrix((world_from_character @ np.linalg.inv(world_to_camera)
                                    @ OPENCV_TO_BLENDER_CAMERA).tolist())
        location, rotation, _scale = world_from_camera.decompose()
        euler = rotation.to_euler("XYZ") if previous_euler is None else rotation.to_euler("XYZ", previous_euler)
        camera_obj.location, camera_obj.rotation_euler = location, euler
        previous_euler = euler
        camera_obj.keyframe_insert("location", frame=frame)
        camera_obj.keyframe_insert("rotation_euler", frame=frame)
        far = max(far, 2.0 * float(np.linalg.norm(world_to_camera[:3, 3])))
    camera_data.clip_end = max(camera_data.clip_end, far)
    _make_keys_linear(camera_obj)
    _make_keys_linear(camera_data)
    return camera_obj


def _make_keys_linear(id_block) -> None:
    """Linear keys, so frames between keyed ones move evenly instead of overshooting."""
    animation = id_block.animation_data
    action = animation.action if animation else None
    if action is None:
        return
    for fcurve in _action_fcurves(action, animation):
        for keyframe in fcurve.keyframe_points:
            keyframe.interpolation = "LINEAR"


def _action_fcurves(action, animation):
    """F-curves of an action, both before Blender 4.4 (action.fcurves) and with slotted actions."""
    if hasattr(action, "layers") and len(action.layers):
        slot = getattr(animation, "action_slot", None)
        for layer in action.layers:
            for strip in layer.strips:
                channelbag = strip.channelbag(slot) if slot is not None else None
                if channelbag is not None:
                    yield from channelbag.fcurves
        return
    yield from getattr(action, "fcurves", ())


__all__ = ["SENSOR_FITS", "exact_projection", "export_camera_path", "import_camera_path", "intrinsics_from_blender",
           "render_size", "character_frame_to_world", "rq_decomposition", "scene_fps"]
