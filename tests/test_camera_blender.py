"""Blender camera export/import: exported cameras project points onto the pixels Blender itself
gives, for varied lenses, sensor fits, shifts, pixel aspects, moving cameras and moved anchors."""

import math

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Matrix, Vector

from blender_addon.camera_export import export_camera_path, import_camera_path
from blender_addon.core.camera_path import CameraPath, load_camera_path, save_camera_path

pytestmark = pytest.mark.blender

# name: render (res_x, res_y, percentage, aspect_x, aspect_y), camera (lens, sensor_w, sensor_h, fit,
# shift_x, shift_y), anchor (location, rotation_euler, scale) or None, moving
CASES = {
    "wide_landscape": ((160, 90, 100, 1.0, 1.0), (14.0, 36.0, 24.0, "AUTO", 0.0, 0.0), None, False),
    "long_lens_portrait": ((90, 160, 100, 1.0, 1.0), (135.0, 36.0, 24.0, "AUTO", 0.0, 0.0), None, False),
    "vertical_fit_shift": ((120, 80, 50, 1.0, 1.0), (35.0, 30.0, 20.0, "VERTICAL", 0.15, -0.1), None, False),
    "horizontal_fit_pixel_aspect": ((128, 96, 100, 2.0, 1.0), (50.0, 24.0, 36.0, "HORIZONTAL", -0.2, 0.05),
                                    None, False),
    "portrait_vertical_aspect_y": ((64, 128, 200, 1.0, 1.5), (24.0, 36.0, 18.0, "VERTICAL", 0.0, 0.3),
                                   None, False),
    "anchor_moved_rotated_scaled": ((100, 100, 100, 1.0, 1.0), (40.0, 36.0, 24.0, "AUTO", 0.05, 0.05),
                                    ((3.0, -2.0, 0.5), (0.1, -0.2, 1.3), (2.0, 2.0, 2.0)), False),
    "moving_camera_and_anchor": ((96, 64, 100, 1.0, 1.2), (28.0, 36.0, 24.0, "AUTO", 0.1, 0.0),
                                 ((1.0, 1.0, 0.0), (0.0, 0.0, 0.7), (1.0, 1.0, 1.0)), True),
}


@pytest.fixture
def scene():
    """A fresh scene of its own, removed afterwards with everything the test made, so other tests'
    Blender state is left alone."""
    before = {"objects": set(bpy.data.objects), "cameras": set(bpy.data.cameras), "actions": set(bpy.data.actions)}
    scene = bpy.data.scenes.new("camera test")
    yield scene
    for kind, existing in before.items():
        collection = getattr(bpy.data, kind)
        for block in [block for block in collection if block not in existing]:
            collection.remove(block)
    bpy.data.scenes.remove(scene)


def build_case(scene, case):
    (res_x, res_y, percentage, aspect_x, aspect_y), camera_settings, anchor_settings, moving = case
    render = scene.render
    render.resolution_x, render.resolution_y, render.resolution_percentage = res_x, res_y, percentage
    render.pixel_aspect_x, render.pixel_aspect_y = aspect_x, aspect_y
    render.fps, render.fps_base = 24, 1.001
    lens, sensor_width, sensor_height, fit, shift_x, shift_y = camera_settings
    camera_data = bpy.data.cameras.new("shot")
    camera_data.lens, camera_data.sensor_width, camera_data.sensor_height = lens, sensor_width, sensor_height
    camera_data.sensor_fit, camera_data.shift_x, camera_data.shift_y = fit, shift_x, shift_y
    camera_obj = bpy.data.objects.new("shot", camera_data)
    scene.collection.objects.link(camera_obj)
    # Look from 6 m in front of and above the origin, towards the body centre (about 1 m up).
    camera_obj.location = (0.5, -6.0, 1.6)
    camera_obj.rotation_euler = (math.radians(84), 0.0, math.radians(5))
    camera_obj.scale = (1.3, 1.3, 1.3)  # a scaled camera still projects like an unscaled one

    anchor_obj = None
    if anchor_settings is not None:
        anchor_obj = bpy.data.objects.new("anchor", None)
        scene.collection.objects.link(anchor_obj)
        location, rotation, scale = anchor_settings
        anchor_obj.location, anchor_obj.rotation_euler, anchor_obj.scale = location, rotation, scale
        camera_obj.parent = anchor_obj  # the camera follows the character's place in the scene
        camera_obj.matrix_parent_inverse = anchor_obj.matrix_world.inverted()
    scene.frame_start, scene.frame_end = 1, 4 if moving else 1
    if moving:
        for frame, (dx, dz, lens_scale, anchor_dx) in enumerate([(0, 0, 1, 0), (0.4, 0.2, 1.2, 0.5),
                                                                  (1.0, 0.3, 1.5, 1.0), (1.5, 0.5, 2.0, 1.5)], 1):
            camera_obj.location = (0.5 + dx, -6.0 + dx, 1.6 + dz)
            camera_obj.rotation_euler = (math.radians(84 - 3 * dz), 0.05 * dx, math.radians(5 + 8 * dx))
            camera_data.lens = lens * lens_scale
            camera_obj.keyframe_insert("location", frame=frame)
            camera_obj.keyframe_insert("rotation_euler", frame=frame)
            camera_data.keyframe_insert("lens", frame=frame)
            # The anchor keeps moving, but the character frame is fixed at the first frame.
            anchor_obj.location = (1.0 + anchor_dx, 1.0, 0.0)
            anchor_obj.keyframe_insert("location", frame=frame)
    return camera_obj, anchor_obj


def character_to_world(anchor_settings) -> Matrix:
    """Independent of the exporter: location and rotation of the anchor at frame 1, no scale."""
    if anchor_settings is None:
        return Matrix.Identity(4)
    location, rotation, _scale = anchor_settings
    return Matrix.Translation(location) @ Euler(rotation).to_matrix().to_4x4()


def test_render_size_and_fps_follow_the_scene(scene):
    camera_obj, anchor_obj = build_case(scene, CASES["vertical_fit_shift"])
    camera_path = export_camera_path(scene, camera_obj, anchor_obj)
    assert (camera_path.width, camera_path.height) == (60, 40)
    assert camera_path.fps == pytest.approx(24 / 1.001)
    assert camera_path.frames.tolist() == [1]


@pytest.mark.parametrize("name", list(CASES))
def test_exported_projection_matches_blender(scene, name):
    case = CASES[name]
    camera_obj, anchor_obj = build_case(scene, case)
    camera_path = export_camera_path(scene, camera_obj, anchor_obj)
    world_from_character = character_to_world(case[2])
    generator = np.random.default_rng(7)
    # A cloud of body-sized points around the character: x, y in +-0.6 m, z in 0..1.9 m.
    character_points = generator.uniform((-0.6, -0.6, 0.0), (0.6, 0.6, 1.9), size=(40, 3))
    checked = 0
    for index, frame in enumerate(camera_path.frames):
        scene.frame_set(int(frame))
        # Blender's own answer, from the evaluated camera (animation applied; this scene is not the window's).
        evaluated_camera = camera_obj.evaluated_get(scene.view_layers[0].depsgraph)
        uv, depth = camera_path.project(character_points)
        for point, pixel, point_depth in zip(character_points, uv[index], depth[index]):
            world_point = world_from_character @ Vector(point)
            view = world_to_camera_view(scene, evaluated_camera, world_point)
            expected = (view.x * camera_path.width, (1.0 - view.y) * camera_path.height)
            assert point_depth == pytest.approx(view.z, abs=1e-4)
            assert abs(pixel[0] - expected[0]) < 0.5 and abs(pixel[1] - expected[1]) < 0.5, (name, frame)
            checked += 1
    assert checked == 40 * camera_path.num_frames


@pytest.mark.parametrize("name", ["vertical_fit_shift", "horizontal_fit_pixel_aspect",
                                  "portrait_vertical_aspect_y", "moving_camera_and_anchor"])
def test_export_import_export_is_identical(scene, name, tmp_path):
    camera_obj, anchor_obj = build_case(scene, CASES[name])
    first = export_camera_path(scene, camera_obj, anchor_obj)
    path = save_camera_path(first, tmp_path / "shot.json")
    imported = import_camera_path(load_camera_path(path), scene, anchor_obj, name="DiMo Camera")
    assert imported.type == "CAMERA" and imported.name.startswith("DiMo Camera")
    assert imported.animation_data is not None and imported.data.animation_data is not None
    second = export_camera_path(scene, imported, anchor_obj, int(first.frames[0]), int(first.frames[-1]))
    assert (second.width, second.height) == (first.width, first.height)
    assert second.fps == pytest.approx(first.fps)
    np.testing.assert_array_equal(second.frames, first.frames)
    np.testing.assert_allclose(second.K, first.K, atol=1e-4)
    np.testing.assert_allclose(second.world_to_camera, first.world_to_camera, atol=1e-5)


def test_import_into_other_scene_settings_sets_render_size(scene):
    K = np.array([[[70.0, 0.0, 40.0], [0.0, 105.0, 20.0], [0.0, 0.0, 1.0]]] * 2)
    world_to_camera = np.tile(np.eye(4), (2, 1, 1))
    world_to_camera[:, :3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # looking along +Y
    world_to_camera[:, :3, 3] = [[0.0, 1.0, 4.0], [0.3, 1.0, 3.5]]
    camera_path = CameraPath(width=80, height=48, fps=12.0, frames=np.array([0, 1]), K=K,
                             world_to_camera=world_to_camera)
    scene.render.resolution_x, scene.render.resolution_percentage = 1920, 50
    camera_obj = import_camera_path(camera_path, scene)
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage) == (80, 48, 100)
    again = export_camera_path(scene, camera_obj, None, 0, 1)
    np.testing.assert_allclose(again.K, K, atol=1e-4)
    np.testing.assert_allclose(again.world_to_camera, world_to_camera, atol=1e-5)
    assert again.fps == pytest.approx(12.0)


def test_export_rejects_non_cameras_and_orthographic(scene):
    empty = bpy.data.objects.new("empty", None)
    scene.collection.objects.link(empty)
    with pytest.raises(ValueError, match="'empty' is not a camera"):
        export_camera_path(scene, empty)
    camera_obj, _ = build_case(scene, CASES["wide_landscape"])
    camera_obj.name, camera_obj.data.name = "hero cam", "CameraData.001"
    for kind, words in (("ORTHO", "orthographic"), ("PANO", "panoramic")):
        camera_obj.data.type = kind
        with pytest.raises(ValueError, match=f"camera 'hero cam' is {words}.*set its Type to Perspective"):
            export_camera_path(scene, camera_obj)
    camera_obj.data.type = "PERSP"
    camera_obj.scale = (-1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="camera 'hero cam' is mirrored"):
        export_camera_path(scene, camera_obj)


def test_a_sheared_camera_is_exported_exactly_with_skew(scene):
    """A camera under a rotated parent scaled (1, 2.5, 1): its world matrix is sheared, and the exported K
    (with skew) and rigid world_to_camera still put every point on the pixel Blender gives."""
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 160, 120, 100
    parent = bpy.data.objects.new("rig", None)
    scene.collection.objects.link(parent)
    parent.rotation_euler, parent.scale = (0.0, 0.0, 0.5), (1.0, 2.5, 1.0)
    camera_obj = bpy.data.objects.new("shot", bpy.data.cameras.new("shot"))
    scene.collection.objects.link(camera_obj)
    camera_obj.parent = parent
    camera_obj.location, camera_obj.rotation_euler = (0.0, -2.6, 1.5), (math.radians(85), 0.0, math.radians(-25))
    scene.frame_start = scene.frame_end = 1
    camera_path = export_camera_path(scene, camera_obj)
    assert abs(camera_path.K[0, 0, 1]) > 1.0  # the shear became skew, not dropped
    scene.frame_set(1)
    evaluated_camera = camera_obj.evaluated_get(scene.view_layers[0].depsgraph)
    points = np.random.default_rng(3).uniform((-0.6, -0.6, 0.0), (0.6, 0.6, 1.9), size=(40, 3))
    uv, depth = camera_path.project(points)
    inside = 0
    for point, pixel, point_depth in zip(points, uv[0], depth[0]):
        view = world_to_camera_view(scene, evaluated_camera, Vector(point))
        expected = (view.x * camera_path.width, (1.0 - view.y) * camera_path.height)
        assert abs(pixel[0] - expected[0]) < 0.5 and abs(pixel[1] - expected[1]) < 0.5
        assert point_depth > 0 and view.z > 0
        inside += 0 <= expected[0] < 160 and 0 <= expected[1] < 120
    assert inside >= 30  # the character is in view, so the check is about pixels that matter
    with pytest.raises(ValueError, match="skewed K"):
        import_camera_path(camera_path, scene)


def test_import_without_render_settings_scales_to_the_scene(scene):
    camera_obj, _ = build_case(scene, CASES["vertical_fit_shift"])  # 60 x 40 output
    first = export_camera_path(scene, camera_obj)
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 240, 160, 100
    imported = import_camera_path(first, scene, apply_render_settings=False)
    assert (scene.render.resolution_x, scene.render.resolution_y) == (240, 160)
    second = export_camera_path(scene, imported, None, 1, 1)
    assert (second.width, second.height) == (240, 160)
    np.testing.assert_allclose(second.K[:, :2], first.K[:, :2] * 4.0, atol=1e-3)  # same view, 4x the pixels
    np.testing.assert_allclose(second.world_to_camera, first.world_to_camera, atol=1e-5)


def test_window_scene_with_track_to_constraint_and_animation():
    """The usual case: the context scene, a camera aimed by a Track To constraint at an animated empty."""
    scene = bpy.context.scene
    saved = (scene.frame_start, scene.frame_end, scene.frame_current, scene.render.resolution_x,
             scene.render.resolution_y, scene.render.resolution_percentage)
    made = []
    try:
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 80, 60, 100
        aim = bpy.data.objects.new("aim", None)
        camera_obj = bpy.data.objects.new("tracking", bpy.data.cameras.new("tracking"))
        made += [aim, camera_obj]
        for obj in made:
            scene.collection.objects.link(obj)
        constraint = camera_obj.constraints.new("TRACK_TO")
        constraint.target, constraint.track_axis, constraint.up_axis = aim, "TRACK_NEGATIVE_Z", "UP_Y"
        for frame, x in ((10, -1.0), (12, 1.0)):
            aim.location = (x, 0.0, 1.0)
            aim.keyframe_insert("location", frame=frame)
            camera_obj.location = (0.0, -5.0 - x, 1.5)
            camera_obj.keyframe_insert("location", frame=frame)
        camera_path = export_camera_path(scene, camera_obj, None, 10, 12)
        assert camera_path.frames.tolist() == [10, 11, 12]
        for index, frame in enumerate(camera_path.frames):
            scene.frame_set(int(frame))
            aim_point = np.array(aim.matrix_world.translation)
            uv, _ = camera_path.project(aim_point[None])
            np.testing.assert_allclose(uv[index, 0], [40.0, 30.0], atol=1e-3)  # the aim is in the centre
            view = world_to_camera_view(scene, camera_obj, Vector((0.3, 0.2, 0.5)))
            uv, _ = camera_path.project(np.array([[0.3, 0.2, 0.5]]))
            np.testing.assert_allclose(uv[index, 0], [view.x * 80, (1 - view.y) * 60], atol=0.5)
        assert camera_path.centers[0, 1] == pytest.approx(-4.0) and camera_path.centers[2, 1] == pytest.approx(-6.0)
    finally:
        for obj in made:
            data = obj.data
            bpy.data.objects.remove(obj)
            if data is not None:
                bpy.data.cameras.remove(data)
        (scene.frame_start, scene.frame_end, scene.frame_current, scene.render.resolution_x,
         scene.render.resolution_y, scene.render.resolution_percentage) = saved
