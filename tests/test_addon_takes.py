"""Takes: new folders never overwrite earlier ones, and a take loads as an image sequence matched to the
scene range on the camera background, an image plane and an object's material; switching takes works."""

from __future__ import annotations

import threading
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from addon_scene import enable_addon, make_shot

pytestmark = pytest.mark.blender


@pytest.fixture(autouse=True)
def addon():
    enable_addon()


def write_frames(folder: Path, count: int, value: int) -> None:
    from blender_addon.takes import frame_file_name

    for index in range(count):
        iio.imwrite(folder / frame_file_name(index), np.full((8, 8, 3), value, dtype=np.uint8))


def test_takes_never_overwrite_earlier_ones(tmp_path):
    from blender_addon import takes

    shot = tmp_path / "dimo" / "Cam"
    first = takes.commit_take(_partial(shot, 3, 10), shot)
    # Someone else (another Blender, a crashed run) already holds take_002: it must be skipped, not replaced.
    (shot / "take_002").mkdir()
    (shot / "take_002" / "keep.txt").write_text("keep")
    second = takes.commit_take(_partial(shot, 2, 20), shot)
    assert (first.name, second.name) == ("take_001", "take_003")
    assert (shot / "take_002" / "keep.txt").read_text() == "keep"
    assert iio.imread(first / "0001.png")[0, 0, 0] == 10 and len(list(first.iterdir())) == 3
    assert not [p for p in shot.iterdir() if p.name.endswith(".partial")]

    # Many takes committed at once still get distinct numbers.
    partials = [_partial(shot, 1, 30 + i) for i in range(6)]
    results = []
    threads = [threading.Thread(target=lambda p=p: results.append(takes.commit_take(p, shot))) for p in partials]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.name for r in results}) == 6
    assert takes.existing_takes(shot)[-1] == "take_009"


def _partial(shot: Path, count: int, value: int) -> Path:
    from blender_addon import takes

    partial = takes.new_partial_dir(shot)
    write_frames(partial, count, value)
    return partial


def test_take_loads_as_sequence_on_background_plane_and_material_and_switches(tmp_path):
    import bpy

    from blender_addon import takes

    enable_addon()
    scene = make_shot(tmp_path, frame_end=12)
    scene.frame_start = 5
    shot = tmp_path / "dimo" / "Cam"
    cube = bpy.data.objects.new("Screen", bpy.data.meshes.new("Screen"))
    scene.collection.objects.link(cube)
    first = takes.commit_take(_partial(shot, 8, 50), shot)
    item = takes.load_take(scene, scene.camera, first, 5, 8, use_image_plane=True, texture_obj=cube)
    background = scene.camera.data.background_images[0]
    image = background.image
    assert image.source == "SEQUENCE" and image.filepath.startswith("//dimo/Cam/take_001/")
    assert (background.image_user.frame_start, background.image_user.frame_duration) == (5, 8)
    assert Path(bpy.path.abspath(image.filepath)) == first / "0001.png"
    plane = bpy.data.objects[takes.PLANE_PREFIX + scene.camera.name]
    assert plane.parent == scene.camera
    plane_node = plane.data.materials[0].node_tree.nodes["DiMo Take"]
    assert plane_node.image == image and plane_node.image_user.frame_duration == 8
    # The plane exactly fills the camera view: its corners project to the frame corners.
    from bpy_extras.object_utils import world_to_camera_view

    scene.view_layers[0].update()
    corners = [world_to_camera_view(scene, scene.camera, plane.matrix_world @ v.co) for v in plane.data.vertices]
    assert sorted((round(c.x, 4), round(c.y, 4)) for c in corners) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert cube.data.materials[0].node_tree.nodes["DiMo Take"].image == image

    second = takes.commit_take(_partial(shot, 8, 90), shot)
    takes.load_take(scene, scene.camera, second, 5, 8, use_image_plane=True, texture_obj=cube)
    assert len(scene.camera.data.background_images) == 1  # the DiMo slot is reused, not stacked
    assert [t.take for t in scene.dimo.takes] == ["take_001", "take_002"] and scene.dimo.active_take_index == 1
    assert bpy.ops.dimo.switch_take(index=0) == {"FINISHED"}
    assert scene.camera.data.background_images[0].image.name == item.image
    assert plane.data.materials[0].node_tree.nodes["DiMo Take"].image.name == item.image
    assert scene.dimo.active_take_index == 0
    with pytest.raises(ValueError, match="no take number 5"):
        takes.switch_take(scene, 4)




def test_generated_frames_spread_over_the_scene_range(tmp_path):
    from blender_addon import takes

    generated = []
    for index in range(5):  # 5 frames at the model's 12 fps ...
        path = tmp_path / f"generated_{index:04d}.png"
        iio.imwrite(path, np.full((4, 4, 3), 10 * index, dtype=np.uint8))
        generated.append(path)
    assert takes.spread_over_scene_frames(generated, 9, tmp_path) == 9  # ... cover 9 scene frames at 24 fps
    shown = [int(iio.imread(tmp_path / takes.frame_file_name(k))[0, 0, 0]) // 10 for k in range(9)]
    assert shown == [0, 1, 1, 2, 2, 3, 3, 4, 4]  # each scene frame shows the nearest generated one
    assert sorted(p.name for p in tmp_path.iterdir()) == [takes.frame_file_name(k) for k in range(9)]
