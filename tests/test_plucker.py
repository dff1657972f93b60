"""Plücker ray maps and point projection in torch: rays pass through the points they image."""

import math

import numpy as np
import pytest
import torch

from blender_addon.core.camera_rigs import look_at
from blender_addon.core.camera_rigs import static_view
from dimo_engine.camera import (
    camera_path_plucker_rays,
    check_character_in_view,
    frames_without_character,
    plucker_rays,
    project_points,
)
from dimo_engine.errors import InputError
from test_camera_path import make_path


def _random_cameras(generator, count):
    """count cameras (K, world_to_camera) looking roughly at the origin from 2-5 m."""
    Ks, world_to_cameras = [], []
    for _ in range(count):
        eye = generator.normal(size=3)
        eye = eye / np.linalg.norm(eye) * generator.uniform(2.0, 5.0)
        world_to_camera = look_at(eye, generator.normal(scale=0.3, size=3))
        K = np.array([[generator.uniform(40, 120), 0.0, generator.uniform(20, 44)],
                      [0.0, generator.uniform(40, 120), generator.uniform(20, 44)], [0.0, 0.0, 1.0]])
        Ks.append(K)
        world_to_cameras.append(world_to_camera)
    return torch.tensor(np.stack(Ks)), torch.tensor(np.stack(world_to_cameras))


def test_ray_through_projected_pixel_passes_through_the_point():
    generator = np.random.default_rng(0)
    K, world_to_camera = _random_cameras(generator, 5)
    height, width = 48, 64
    rays = plucker_rays(K, world_to_camera, height, width)  # (5, 6, 48, 64)
    assert rays.shape == (5, 6, height, width) and rays.dtype == torch.float64
    # Points placed exactly behind pixel centres, so no interpolation is needed.
    rows, columns = torch.tensor([3, 20, 41]), torch.tensor([7, 33, 60])
    for camera in range(5):
        pixels = torch.stack([columns + 0.5, rows + 0.5, torch.ones(3, dtype=torch.float64)], dim=-1)
        depths = torch.tensor([1.5, 3.0, 7.0], dtype=torch.float64)
        camera_points = (torch.linalg.inv(K[camera]) @ pixels.T).T * depths[:, None]
        rotation, translation = world_to_camera[camera, :3, :3], world_to_camera[camera, :3, 3]
        points = (rotation.T @ (camera_points - translation).T).T  # (3, 3) world points
        uv, depth = project_points(points, K[camera], world_to_camera[camera])
        torch.testing.assert_close(uv, pixels[:, :2])
        torch.testing.assert_close(depth, depths)
        direction = rays[camera, :3, rows, columns].T  # (3, 3)
        moment = rays[camera, 3:, rows, columns].T
        torch.testing.assert_close(direction.norm(dim=-1), torch.ones(3, dtype=torch.float64))
        # A point X lies on the ray (d, m) exactly when X x d = m.
        torch.testing.assert_close(torch.cross(points, direction, dim=-1), moment)
        # The direction points from the camera towards the point.
        origin = -rotation.T @ translation
        assert torch.all(((points - origin) * direction).sum(-1) > 0)
        # Moment is orthogonal to the direction everywhere.
        dot = (rays[camera, :3] * rays[camera, 3:]).sum(0)
        assert dot.abs().max() < 1e-9


def test_batch_shapes_broadcast_and_dtype():
    K, world_to_camera = _random_cameras(np.random.default_rng(1), 6)
    batched = plucker_rays(K.reshape(2, 3, 3, 3), world_to_camera.reshape(2, 3, 4, 4), 8, 10)
    assert batched.shape == (2, 3, 6, 8, 10)
    flat = plucker_rays(K, world_to_camera, 8, 10)
    torch.testing.assert_close(batched.reshape(6, 6, 8, 10), flat)
    # One K shared by all cameras broadcasts.
    shared = plucker_rays(K[0], world_to_camera, 8, 10)
    assert shared.shape == (6, 6, 8, 10)
    torch.testing.assert_close(shared[0], flat[0])
    # numpy input gives float32, what models take.
    assert plucker_rays(K.numpy(), world_to_camera.numpy(), 8, 10).dtype == torch.float32
    uv, depth = project_points(torch.zeros(2, 3, 7, 3), K.reshape(2, 3, 3, 3), world_to_camera.reshape(2, 3, 4, 4))
    assert uv.shape == (2, 3, 7, 2) and depth.shape == (2, 3, 7)


def test_torch_projection_agrees_with_the_camera_path():
    camera_path = make_path(num_frames=3, width=128, height=96)
    camera_path.K[:, 0, 2] += 7.0
    points = np.random.default_rng(2).normal(scale=1.5, size=(3, 9, 3))  # (F, N, 3), some behind the camera
    uv, depth = camera_path.project(points)
    torch_uv, torch_depth = project_points(torch.from_numpy(points), camera_path.K, camera_path.world_to_camera)
    np.testing.assert_allclose(torch_depth.numpy(), depth, atol=1e-12)
    np.testing.assert_allclose(torch_uv.numpy(), uv, rtol=1e-12, atol=1e-9)
    assert np.any(depth < 0) and np.any(depth > 0)


def test_resolution_rescaling_keeps_the_field_of_view():
    camera_path = make_path(num_frames=3, width=128, height=96)
    camera_path.K[:, 0, 2] += 7.0  # off-centre principal point (lens shift)
    full = camera_path_plucker_rays(camera_path)  # (3, 6, 96, 128)
    small = camera_path_plucker_rays(camera_path, 24, 32)  # 4x smaller
    assert full.shape == (3, 6, 96, 128) and small.shape == (3, 6, 24, 32)
    # A small pixel's centre is a point of the full image: (4j + 2, 4i + 2). Back-project it with the
    # full-resolution K; the small map's ray there must pass through that 3D point.
    rows, columns = torch.tensor([0, 11, 23]), torch.tensor([0, 17, 31])
    pixels = torch.stack([4.0 * columns + 2, 4.0 * rows + 2, torch.ones(3)], dim=-1).double()
    for frame in range(3):
        K = torch.tensor(camera_path.K[frame])
        world_to_camera = torch.tensor(camera_path.world_to_camera[frame])
        camera_points = (torch.linalg.inv(K) @ pixels.T).T * 2.0
        points = (world_to_camera[:3, :3].T @ (camera_points - world_to_camera[:3, 3]).T).T
        direction = small[frame, :3, rows, columns].T.double()
        moment = small[frame, 3:, rows, columns].T.double()
        torch.testing.assert_close(torch.cross(points, direction, dim=-1), moment, atol=1e-5, rtol=0)
    # Corner rays of the small map point at the same image corners as the full map's (same field of view).
    explicit = plucker_rays(camera_path.K, camera_path.world_to_camera, 24, 32, image_size=(96, 128))
    torch.testing.assert_close(explicit, small)
    # Without image_size, K is taken as already for 24 x 32: a much wider view, so different rays.
    assert (plucker_rays(camera_path.K, camera_path.world_to_camera, 24, 32) - small).abs().max() > 0.1


def test_centre_ray_is_the_optical_axis():
    camera_path = make_path(num_frames=2, width=64, height=64)
    rays = camera_path_plucker_rays(camera_path, 2, 2, dtype=torch.float64)
    # With a centred principal point the four centre-most rays are symmetric about the axis.
    axis = torch.nn.functional.normalize(rays[:, :3].mean(dim=(2, 3)), dim=1)
    forward = torch.tensor(camera_path.world_to_camera[:, 2, :3])
    torch.testing.assert_close(axis, forward)
    angle = math.degrees(math.acos(float((rays[0, :3, 0, 0] * forward[0]).sum())))
    expected = math.degrees(math.atan(math.hypot(16, 16) / 80.0))
    assert angle == pytest.approx(expected, abs=1e-6)


def test_a_camera_that_cannot_show_the_character_is_refused_or_warned_with_its_frames(caplog):
    camera = static_view(30.0, 10.0, 12, 12.0, 64, 64)
    assert frames_without_character(camera) == {}
    check_character_in_view(camera)
    camera.world_to_camera[3:6, 0, 3] += 50.0  # frames 3-5 look 50 m to the side
    camera.world_to_camera[9, :3, 3] *= 1e30
    assert sorted(frames_without_character(camera)) == [3, 4, 5, 9]
    with caplog.at_level("WARNING", logger="dimo_engine.camera"):
        check_character_in_view(camera, "camera shot_010.json")
    assert "shot_010.json" in caplog.text and "frame(s) 3-5, 9" in caplog.text
    camera.world_to_camera[:, 0, 3] += 1e6
    with pytest.raises(InputError, match=r"shot_010.json: .* in every frame \(0-11\)"):
        check_character_in_view(camera, "camera shot_010.json")
