""""Render driving clip" and "render reference from camera" write files the engine's own readers accept:
a zip of frames at 24 fps covering the scene range, and a reference PNG with its camera path file."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from addon_scene import enable_addon, make_shot

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def add_animated_character(scene):
    """A box 'person' parented to an armature-like anchor, walking along X, plus a wall that is not the character."""
    import bpy

    mesh = bpy.data.meshes.new("Body")
    mesh.from_pydata(
        [(x, y, z) for x in (-0.25, 0.25) for y in (-0.15, 0.15) for z in (0.0, 1.8)],
        [],
        [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)],
    )
    body = bpy.data.objects.new("Body", mesh)
    body.parent = scene.dimo.anchor
    scene.collection.objects.link(body)
    body.location = (0.0, 0.0, 0.0)
    body.keyframe_insert("location", frame=scene.frame_start)
    body.location = (1.0, 0.0, 0.0)
    body.keyframe_insert("location", frame=scene.frame_end)
    wall = bpy.data.objects.new("Wall", bpy.data.meshes.new("Wall"))
    wall.data.from_pydata([(-3, 3, 0), (3, 3, 0), (3, 3, 3), (-3, 3, 3)], [], [(0, 1, 2, 3)])
    scene.collection.objects.link(wall)
    return body, wall


@pytest.fixture(autouse=True)
def addon():
    enable_addon()


def test_render_driving_clip_is_a_zip_the_engine_reads_at_the_scene_timing(tmp_path):
    import bpy

    from dimo_engine.video_io import read_video

    scene = make_shot(tmp_path, frame_end=9)
    add_animated_character(scene)
    camera_before = scene.camera
    assert bpy.ops.dimo.render_driving() == {"FINISHED"}
    clip = tmp_path / "dimo" / "driving" / "driving_001.zip"
    assert bpy.path.abspath(scene.dimo.driving_video) == str(clip)
    assert scene.camera == camera_before and scene.render.engine != "BLENDER_WORKBENCH"  # settings restored
    assert "DiMo Driving Camera" not in bpy.data.objects
    with zipfile.ZipFile(clip) as archive:
        archive.extractall(tmp_path / "frames")
    frames, fps = read_video(tmp_path / "frames")
    assert frames.shape == (9, 128, 128, 3) and fps == 24.0
    # The character moves between the first and the last frame; the render is not blank.
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 50

    # At 48 fps the same range lasts half as long: rendered on 24 fps sub-frames, 5 frames.
    scene.render.fps = 48
    assert bpy.ops.dimo.render_driving() == {"FINISHED"}
    with zipfile.ZipFile(tmp_path / "dimo" / "driving" / "driving_002.zip") as archive:
        assert len(archive.namelist()) == 5
    assert (tmp_path / "dimo" / "driving" / "driving_001.zip").is_file()  # never overwritten


def test_render_reference_renders_only_the_character_and_records_its_camera(tmp_path):
    import bpy
    from bpy_extras.object_utils import world_to_camera_view

    from dimo_engine.camera import load_camera_path, project_points
    from dimo_engine.video_io import read_image

    scene = make_shot(tmp_path, frame_end=3)
    body, wall = add_animated_character(scene)
    scene.render.engine = "BLENDER_WORKBENCH"
    for obj in scene.objects:
        obj.select_set(obj == body)
    assert bpy.ops.dimo.render_reference() == {"FINISHED"}
    image_path = tmp_path / "dimo" / "reference" / "reference_001.png"
    camera_file = image_path.with_suffix(".json")
    assert bpy.path.abspath(scene.dimo.reference_image) == str(image_path)
    assert bpy.path.abspath(scene.dimo.reference_camera) == str(camera_file)
    reference = read_image(image_path)
    assert reference.shape == (64, 96, 4)
    alpha = reference[..., 3]
    assert alpha.max() == 255 and alpha[:, :4].max() == 0  # the character alone is opaque; the set stays out
    assert not wall.hide_render  # hidden only while rendering
    camera = load_camera_path(camera_file)
    assert camera.num_frames == 1 and (camera.width, camera.height) == (96, 64)
    # The recorded camera is in the character frame: the body's top lands where Blender sees it.
    import torch
    from mathutils import Vector

    scene.view_layers[0].update()
    top_world = body.matrix_world @ Vector((0.0, 0.0, 1.8))
    top_character = scene.dimo.anchor.matrix_world.inverted() @ top_world
    uv, _ = project_points(torch.tensor([[list(top_character)]], dtype=torch.float64),
                           torch.tensor(camera.K[:1]), torch.tensor(camera.world_to_camera[:1]))
    expected = world_to_camera_view(scene, scene.camera, top_world)
    assert uv[0, 0, 0].item() == pytest.approx(expected.x * 96, abs=0.5)
    assert uv[0, 0, 1].item() == pytest.approx((1 - expected.y) * 64, abs=0.5)
    # Nothing selected: one clear sentence, nothing written.
    for obj in scene.objects:
        obj.select_set(False)
    with pytest.raises(RuntimeError, match="select the character"):
        bpy.ops.dimo.render_reference()
    assert not (tmp_path / "dimo" / "reference" / "reference_002.png").exists()


def test_camera_from_phrase_keys_a_camera_that_exports_back_to_the_phrase(tmp_path):
    import bpy

    from blender_addon.camera_export import export_camera_path, render_size, scene_fps
    from blender_addon.core.camera_phrases import camera_path_from_phrase

    scene = make_shot(tmp_path, frame_end=12)
    scene.frame_start = 3
    scene.dimo.camera_phrase = "orbit left 90 degrees"
    assert bpy.ops.dimo.camera_from_phrase() == {"FINISHED"}
    camera_obj = scene.camera
    assert camera_obj.name.startswith("DiMo orbit left") and camera_obj.animation_data is not None
    exported = export_camera_path(scene, camera_obj, scene.dimo.anchor, 3, 12)
    width, height = render_size(scene)
    expected = camera_path_from_phrase("orbit left 90 degrees", 10, scene_fps(scene), width, height)
    assert (exported.width, exported.height) == (96, 64)  # the scene keeps its own output size
    np.testing.assert_allclose(exported.world_to_camera, expected.world_to_camera, atol=1e-4)
    np.testing.assert_allclose(exported.K, expected.K, rtol=1e-4)
    assert list(exported.frames) == list(range(3, 13))

    scene.dimo.camera_phrase = "fly sideways loudly"
    with pytest.raises(RuntimeError, match="fly sideways loudly"):
        bpy.ops.dimo.camera_from_phrase()
    assert scene.camera == camera_obj
