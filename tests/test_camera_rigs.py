"""Camera rigs: a person-sized box stays in frame, moves do what they say, and seeds reproduce."""

import math

import numpy as np
import pytest

from blender_addon.core.camera_path import validate_camera_path
from blender_addon.core.camera_rigs import (
    DEFAULT_SUBJECT_BOX,
    MOVES,
    box_corners,
    clip_rig,
    driving_view,
    intrinsics_from_focal,
    intrinsics_from_fov,
    look_at,
    moving_camera,
    static_ring,
)

# 52 joint-like points filling a 1.8 m standing person (the box's corners plus its inside).
BODY_POINTS = np.concatenate([
    box_corners(DEFAULT_SUBJECT_BOX),
    np.random.default_rng(0).uniform(DEFAULT_SUBJECT_BOX[0], DEFAULT_SUBJECT_BOX[1], size=(44, 3)),
])


def assert_in_frame(camera_path, points=BODY_POINTS):
    validate_camera_path(camera_path)
    uv, depth = camera_path.project(points)
    assert np.all(depth > 0.3)
    assert np.all(uv >= 0.0) and np.all(uv[..., 0] <= camera_path.width) and np.all(uv[..., 1] <= camera_path.height)


def azimuth_deg(points):
    """Azimuth of points about the vertical axis: 0 in front (-Y), 90 on the character's left (+X)."""
    return np.degrees(np.arctan2(points[..., 0], -points[..., 1]))


def test_look_at_puts_target_at_the_principal_point_and_up_up():
    world_to_camera = look_at((2.0, -4.0, 1.5), (0.0, 0.0, 1.0))
    K = intrinsics_from_fov(40.0, 64, 48)
    camera_target = world_to_camera @ [0.0, 0.0, 1.0, 1.0]
    assert camera_target[0] == pytest.approx(0.0, abs=1e-12) and camera_target[1] == pytest.approx(0.0, abs=1e-12)
    above = world_to_camera @ [0.0, 0.0, 2.0, 1.0]
    assert above[1] < 0  # higher in the world is up (negative y) in the image
    np.testing.assert_allclose(world_to_camera[:3, :3] @ world_to_camera[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(world_to_camera[:3, :3]) == pytest.approx(1.0)
    # Straight down still gives a valid rotation.
    down = look_at((0.0, 0.0, 5.0), (0.0, 0.0, 0.0))
    assert np.linalg.det(down[:3, :3]) == pytest.approx(1.0)
    # fov: a point at the top edge of a 40 degree vertical view lands on row 0.
    edge = K @ np.array([0.0, -math.tan(math.radians(20.0)), 1.0])
    assert edge[1] == pytest.approx(0.0, abs=1e-9)


def test_intrinsics_from_focal_matches_blender_horizontal_sensor():
    K = intrinsics_from_focal(50.0, 100, 60, sensor_width_mm=36.0)
    assert K[0, 0] == pytest.approx(50.0 / 36.0 * 100.0) and K[1, 1] == K[0, 0]
    assert (K[0, 2], K[1, 2]) == (50.0, 30.0)


def test_static_ring_views_are_where_named_and_frame_the_person():
    views = static_ring(6, (0.0, 30.0), num_frames=3, fps=12.0, width=64, height=96, seed=5)
    assert len(views) == 12
    assert len({view.name for view in views}) == 12
    assert views[1].name == "static_az060_el00" and views[7].name == "static_az060_el30"
    distances, focals = [], []
    for view in views:
        camera_path = view.camera_path
        assert view.kind == "static" and camera_path.num_frames == 3
        assert_in_frame(camera_path)
        centre = camera_path.centers[0]
        offset = centre - np.array([0.0, 0.0, 0.9])
        difference = (azimuth_deg(offset) - view.details["azimuth_deg"] + 180.0) % 360.0 - 180.0
        assert abs(difference) < 4.0
        elevation = math.degrees(math.atan2(offset[2], np.linalg.norm(offset[:2])))
        assert elevation == pytest.approx(view.details["elevation_deg"], abs=4.0)
        np.testing.assert_allclose(camera_path.world_to_camera, camera_path.world_to_camera[:1].repeat(3, 0))
        distances.append(np.linalg.norm(offset))
        focals.append(camera_path.K[0, 0, 0])
    assert np.ptp(distances) > 0.5 and np.ptp(focals) > 5.0  # random distance and focal per view


@pytest.mark.parametrize("kind", [*MOVES, "orbit+dolly_in", "orbit+crane_up+handheld", "dolly_out+crane_down"])
def test_moving_cameras_keep_the_person_in_frame(kind):
    for seed in range(3):
        camera_path = moving_camera(kind, num_frames=12, fps=12.0, width=80, height=64, seed=seed)
        assert_in_frame(camera_path)
        assert np.linalg.norm(camera_path.centers[-1] - camera_path.centers[0]) > 0.005  # it moves


def test_moves_do_what_they_say():
    target = np.array([0.0, 0.0, 0.9])
    orbit = moving_camera("orbit", 10, 12.0, 64, 64, seed=1, azimuth_deg=0.0)
    start, end = orbit.centers[0] - target, orbit.centers[-1] - target
    assert abs(azimuth_deg(start)) < 5.0 and abs(azimuth_deg(end)) > 25.0
    assert np.linalg.norm(start[:2]) == pytest.approx(np.linalg.norm(end[:2]), rel=0.05)  # same radius

    dolly_in = moving_camera("dolly_in", 10, 12.0, 64, 64, seed=1)
    distances = np.linalg.norm(dolly_in.centers - target, axis=1)
    assert np.all(np.diff(distances) <= 1e-9) and distances[-1] < 0.85 * distances[0]
    dolly_out = moving_camera("dolly_out", 10, 12.0, 64, 64, seed=1)
    distances = np.linalg.norm(dolly_out.centers - target, axis=1)
    assert distances[-1] > 1.2 * distances[0]

    crane_up = moving_camera("crane_up", 10, 12.0, 64, 64, seed=1)
    assert crane_up.centers[-1, 2] - crane_up.centers[0, 2] > 0.35
    uv, _ = crane_up.project(np.array([[0.0, 0.0, 0.9]]))
    assert np.abs(uv[:, 0] - 32.0).max() < 10.0  # still looking at the person
    crane_down = moving_camera("crane_down", 10, 12.0, 64, 64, seed=1)
    assert crane_down.centers[-1, 2] < crane_down.centers[0, 2] - 0.35

    handheld = moving_camera("handheld", 24, 24.0, 64, 64, seed=1)
    steps = np.linalg.norm(np.diff(handheld.centers, axis=0), axis=1)
    assert 0.0005 < steps.max() < 0.05  # small, continuous shake


def test_driving_view_is_frontal_and_fills_the_frame():
    for seed in range(4):
        camera_path = driving_view(8, 12.0, 64, 64, seed=seed)
        assert_in_frame(camera_path)
        assert abs(azimuth_deg(camera_path.centers[0])) < 40.0
        uv, _ = camera_path.project(box_corners(DEFAULT_SUBJECT_BOX))
        assert np.ptp(uv[0, :, 1]) > 0.6 * 64  # the person is most of the image height


def test_rigs_are_deterministic_from_the_seed():
    first = clip_rig(6, 12.0, 64, 64, seed=11)
    again = clip_rig(6, 12.0, 64, 64, seed=11)
    other = clip_rig(6, 12.0, 64, 64, seed=12)
    assert [view.name for view in first] == [view.name for view in again]
    assert [view.kind for view in first].count("driving") == 1
    for a, b, c in zip(first, again, other):
        np.testing.assert_array_equal(a.camera_path.world_to_camera, b.camera_path.world_to_camera)
        np.testing.assert_array_equal(a.camera_path.K, b.camera_path.K)
        assert not np.allclose(a.camera_path.world_to_camera, c.camera_path.world_to_camera)
    assert {"name": "moving_orbit", "kind": "moving", "move": "orbit"} in [view.manifest_entry() for view in first]


def test_a_travelling_subject_box_is_framed_too():
    # A walk 3 m to the side: the box covers the whole path.
    box = (np.array([-0.5, -0.4, 0.0]), np.array([3.5, 0.4, 1.8]))
    points = np.random.default_rng(1).uniform(box[0], box[1], size=(60, 3))
    for view in clip_rig(4, 12.0, 64, 64, seed=2, subject_box=box):
        assert_in_frame(view.camera_path, points)


def test_bad_moves_are_refused():
    with pytest.raises(ValueError, match="unknown camera move 'spin'"):
        moving_camera("spin", 4, 12.0, 64, 64)
    with pytest.raises(ValueError, match="at least one azimuth"):
        static_ring(0, (0.0,), 4, 12.0, 64, 64)
