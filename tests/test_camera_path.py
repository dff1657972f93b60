"""The camera path file: round trip, atomic writing, and validation messages that name frame and field."""

import json
import math

import numpy as np
import pytest

from blender_addon.core.camera_path import (
    CameraPath,
    CameraPathError,
    camera_path_from_dict,
    camera_path_to_dict,
    load_camera_path,
    save_camera_path,
    validate_camera_path,
)


def _rotation_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def make_path(num_frames=4, width=96, height=64):
    # Camera looking along +Y of the character frame (OpenCV: x right, y down, z forward),
    # turning slowly about the vertical axis.
    base = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])
    world_to_camera = np.tile(np.eye(4), (num_frames, 1, 1))
    for index in range(num_frames):
        world_to_camera[index, :3, :3] = base @ _rotation_z(0.1 * index)
        world_to_camera[index, :3, 3] = [0.1 * index, -0.9, 3.0]
    K = np.tile(np.array([[80.0, 0, width / 2], [0, 80.0, height / 2], [0, 0, 1]]), (num_frames, 1, 1))
    return CameraPath(width=width, height=height, fps=12.0, frames=np.arange(3, 3 + num_frames),
                      K=K, world_to_camera=world_to_camera)


def test_save_load_round_trip_is_exact(tmp_path):
    camera_path = make_path()
    camera_path.K[2, 0, 2] = 1.0 / 3.0  # a number with no short decimal form
    path = save_camera_path(camera_path, tmp_path / "sub" / "camera.json")
    loaded = load_camera_path(path)
    assert loaded.width == 96 and loaded.height == 64 and loaded.fps == 12.0
    assert loaded.num_frames == 4
    np.testing.assert_array_equal(loaded.frames, camera_path.frames)
    np.testing.assert_array_equal(loaded.K, camera_path.K)
    np.testing.assert_array_equal(loaded.world_to_camera, camera_path.world_to_camera)
    data = json.loads(path.read_text())
    assert data["format"] == "dimo-camera-path" and data["version"] == 1
    assert data["frames"][0]["frame"] == 3
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary left behind


def test_invalid_path_is_not_written(tmp_path):
    camera_path = make_path()
    camera_path.K[1, 0, 0] = float("nan")
    target = tmp_path / "camera.json"
    with pytest.raises(CameraPathError, match="frame 4"):
        save_camera_path(camera_path, target)
    assert list(tmp_path.iterdir()) == []


def test_centers_and_projection_agree_with_the_pose():
    camera_path = make_path()
    centers = camera_path.centers
    # The camera centre maps to the camera origin.
    for index in range(camera_path.num_frames):
        origin = camera_path.world_to_camera[index] @ np.append(centers[index], 1.0)
        np.testing.assert_allclose(origin[:3], 0.0, atol=1e-12)
    # A point on the optical axis lands on the principal point.
    forward = camera_path.world_to_camera[:, 2, :3]  # (F, 3) optical axis in the world
    points = (centers + 2.5 * forward)[:, None, :]
    uv, depth = camera_path.project(points)
    np.testing.assert_allclose(uv[:, 0], [[48.0, 32.0]] * 4, atol=1e-9)
    np.testing.assert_allclose(depth[:, 0], 2.5, atol=1e-9)


def test_projection_min_depth_keeps_points_on_the_camera_plane_finite():
    camera_path = make_path(num_frames=1)
    on_plane = camera_path.centers[0] + camera_path.world_to_camera[0, 0, :3]  # 1 m to the right, depth 0
    uv, depth = camera_path.project(on_plane[None])
    assert abs(depth[0, 0]) < 1e-12 and not np.all(np.isfinite(uv))
    guarded, _ = camera_path.project(on_plane[None], min_depth=1e-9)
    assert np.all(np.isfinite(guarded)) and guarded[0, 0, 0] > 1e9


def test_resized_scales_the_intrinsics_with_the_image():
    camera_path = make_path(width=96, height=64)
    half = camera_path.resized(48, 32)
    assert (half.width, half.height) == (48, 32)
    points = np.array([[0.2, 0.1, 0.9], [-0.3, 0.4, 1.5]])
    # The same point lands on the same place of the picture: pixel coordinates (corner convention) halve.
    np.testing.assert_allclose(half.project(points)[0], camera_path.project(points)[0] / 2, atol=1e-9)
    np.testing.assert_array_equal(half.world_to_camera, camera_path.world_to_camera)


def test_take_subsets_or_retimes_the_frames():
    camera_path = make_path(num_frames=4)  # frames 3..6 at 12 fps
    subset = camera_path.take([1, 3])
    np.testing.assert_array_equal(subset.frames, [4, 6])
    assert subset.fps == 12.0
    np.testing.assert_array_equal(subset.K, camera_path.K[[1, 3]])
    np.testing.assert_array_equal(subset.world_to_camera, camera_path.world_to_camera[[1, 3]])
    held = camera_path.take([2, 2, 2], fps=24)
    np.testing.assert_array_equal(held.frames, [0, 1, 2])
    assert held.fps == 24.0
    np.testing.assert_array_equal(held.world_to_camera, camera_path.world_to_camera[[2, 2, 2]])
    validate_camera_path(held)


def _broken(mutate):
    camera_path = make_path()
    mutate(camera_path)
    return camera_path


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.world_to_camera.__setitem__((2, 1, 3), float("nan")), r"frame 5 .*non-finite.*world_to_camera"),
        (lambda c: c.K.__setitem__((0, 0, 2), float("inf")), r"frame 3 .*non-finite.*K"),
        (lambda c: c.world_to_camera.__setitem__((1, slice(0, 3), 0), c.world_to_camera[1, :3, 0] * 1.1),
         r"frame 4 .*non-rigid rotation"),
        (lambda c: c.world_to_camera.__setitem__((3, 0, slice(0, 3)), -c.world_to_camera[3, 0, :3]),
         r"frame 6 .*det=-1"),
        (lambda c: c.frames.__setitem__(2, 4), r"frame 4 follows frame 4"),
        (lambda c: c.K.__setitem__((1, 1, 1), -5.0), r"frame 4 .*fy=-5"),
        (lambda c: c.K.__setitem__((0, 2, 0), 0.5), r"frame 3 .*K last row"),
        (lambda c: c.world_to_camera.__setitem__((0, 3, 3), 2.0), r"frame 3 .*bottom row"),
        (lambda c: setattr(c, "width", 4), r"width is 4 pixels"),
        (lambda c: setattr(c, "height", 9000), r"height is 9000 pixels"),
        (lambda c: setattr(c, "width", 64.0), r"width must be an integer"),
        (lambda c: setattr(c, "fps", 0.0), r"fps must be a positive"),
        (lambda c: setattr(c, "fps", float("nan")), r"fps must be a positive"),
    ],
)
def test_validation_names_frame_and_field(mutate, expected):
    with pytest.raises(CameraPathError, match=expected) as error:
        validate_camera_path(_broken(mutate), source="shot.json")
    assert str(error.value).startswith("shot.json: ")
    assert isinstance(error.value, ValueError)


def test_valid_path_passes_validation():
    camera_path = make_path()
    assert validate_camera_path(camera_path) is camera_path


def test_file_level_errors(tmp_path):
    with pytest.raises(CameraPathError, match="not found"):
        load_camera_path(tmp_path / "missing.json")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(CameraPathError, match="bad.json: not valid JSON"):
        load_camera_path(bad_json)
    data = camera_path_to_dict(make_path())
    with pytest.raises(CameraPathError, match="format is 'other'"):
        camera_path_from_dict({**data, "format": "other"})
    with pytest.raises(CameraPathError, match="version 2 is not supported"):
        camera_path_from_dict({**data, "version": 2})
    frames = [dict(entry) for entry in data["frames"]]
    frames[1]["K"] = [[1, 0], [0, 1]]
    with pytest.raises(CameraPathError, match=r"frame 4 field 'K' has shape \(2, 2\)"):
        camera_path_from_dict({**data, "frames": frames})
    frames = [dict(entry) for entry in data["frames"]]
    frames[2]["frame"] = 2.5
    with pytest.raises(CameraPathError, match=r"frame #2 has frame number 2.5"):
        camera_path_from_dict({**data, "frames": frames})
    with pytest.raises(CameraPathError, match="non-empty list"):
        camera_path_from_dict({**data, "frames": []})
    # NaN written by another tool is caught on load, naming the file and frame.
    frames = [dict(entry) for entry in data["frames"]]
    frames[3]["world_to_camera"] = [[float("nan")] * 4] * 4
    path = tmp_path / "nan.json"
    path.write_text(json.dumps({**data, "frames": frames}))
    with pytest.raises(CameraPathError, match=r"nan.json: frame 6 has a non-finite"):
        load_camera_path(path)


def test_engine_reexport_raises_input_error(tmp_path):
    from dimo_engine.camera import load_camera_path as engine_load
    from dimo_engine.errors import InputError

    path = tmp_path / "camera.json"
    path.write_text(json.dumps({**camera_path_to_dict(make_path()), "fps": -1}))
    with pytest.raises(InputError, match="fps must be a positive"):
        engine_load(path)
