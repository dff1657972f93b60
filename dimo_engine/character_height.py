"""The character's height. A driving clip alone cannot tell a small person near the camera from a tall one further
away, so the motion read from it comes at the size the encoders guess from the picture, about a typical body's. A
previs artist knows how tall their character is, and a reference image taken by a known camera shows it
(`height_in_view`): `motion_at_height` scales the motion so its body stands that tall, as the target cameras in the
scene expect (docs/default_model.md, "The character's height").
"""

from __future__ import annotations

from functools import lru_cache, partial

import numpy as np
import torch

from dimo_engine.errors import InputError

__all__ = ["HEIGHT_RANGE_M", "body_height", "height_in_view", "motion_at_height", "motion_height", "skeleton_span"]

HEIGHT_RANGE_M = (0.3, 3.0)
# Bones whose lengths add up to a body's height, whatever its pose: each leg from the ankle to the pelvis (the two
# averaged), and the spine from the pelvis to the head joint (SMPL-H body joints).
LEGS = (((7, 4), (4, 1), (1, 0)), ((8, 5), (5, 2), (2, 0)))
SPINE = ((0, 3), (3, 6), (6, 9), (9, 12), (12, 15))
# How tall the shipped reading (the silhouette stage's encoders, the silhouette fit) reads a body against how tall it
# stands: the median over 96 training views (48 clips' driving view and one still view) of encoded / true height is
# 0.987 (mean 0.983, sd 0.049). The encoders before the silhouette stage read 1.023, which this held until 2026-12-07.
ENCODED_HEIGHT_BIAS = 0.987
# The body proxy's capsule radii are an adult's: a pose is brought to this height before its reach is measured.
PROXY_BODY_HEIGHT_M = 1.75


def skeleton_span(joints: torch.Tensor) -> torch.Tensor:
    """The leg and spine bone lengths of body joints `(..., 22, 3)` added up `(...)`: a height that does not change
    with the pose."""
    def length(bones):
        return sum((joints[..., a, :] - joints[..., b, :]).norm(dim=-1) for a, b in bones)

    return (length(LEGS[0]) + length(LEGS[1])) / 2 + length(SPINE)


@lru_cache(maxsize=1)
def _height_per_span() -> float:
    """The procedural body's standing height (its mesh, floor to crown) over its `skeleton_span`."""
    from dimo_engine.body.kinematics import procedural_rest_joints
    from dimo_engine.body.procedural_body import BodyProportions, build_mesh

    up = build_mesh(BodyProportions()).vertices[:, 1]
    span = skeleton_span(torch.as_tensor(procedural_rest_joints(None)[:22], dtype=torch.float64))
    return float((up.max() - up.min()) / span)


def body_height(betas, body_model=None) -> float:
    """How tall the procedural body of shape `betas` stands, floor to crown (its mesh), in metres: a rendered
    character's height, as an artist gives their own."""
    from dimo_engine.body.body_model import load_body_model

    up = (body_model or load_body_model()).rest_vertices(betas)[:, 1]
    return float(up.max() - up.min())


def motion_height(body_anchors: torch.Tensor) -> float:
    """How tall the body of a motion stands, in metres: its body anchors `(F, 22, 3)`, the clip's median span."""
    return float(skeleton_span(body_anchors.double()).median()) * _height_per_span()


def motion_at_height(motion, height_m: float):
    """`MotionTokens` (each token its feature, then its anchor in the character frame) scaled about the character
    frame's origin (the ground under the body at the first frame) so that the body stands `height_m` metres tall:
    its pose, its height above the ground and its travel alike, as a body of that size moves."""
    from dimo_engine.pipelines.pipeline_dimo import MotionTokens

    low, high = HEIGHT_RANGE_M
    if not low <= height_m <= high:
        raise InputError(f"character_height must be a height in metres from {low:g} to {high:g}, got {height_m!r}.")
    scale = height_m / (motion_height(motion.body[0, :, :, -3:]) / ENCODED_HEIGHT_BIAS)

    def scaled(tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([tokens[..., :-3], tokens[..., -3:] * scale], dim=-1)

    return MotionTokens(scaled(motion.body), scaled(motion.hands))


def _proxy_ends(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The body proxy of poses `(N, 22, 3)` (`character_layer.PROXY_SEGMENTS`): its capsules' ends `(N, 2G, 3)` and
    their radii `(N, 2G)`, scaled with each body (its `motion_height` over the radii's `PROXY_BODY_HEIGHT_M`)."""
    from dimo_engine.character_layer import PROXY_RADII, proxy_segments

    starts, ends = proxy_segments(joints)
    scale = skeleton_span(joints) * _height_per_span() / PROXY_BODY_HEIGHT_M  # (N,)
    radii = torch.tensor(PROXY_RADII, dtype=joints.dtype).T.reshape(-1)[None] * scale[:, None]
    return torch.cat([starts, ends], 1), radii


def _proxy_rows(points: torch.Tensor, radii: torch.Tensor, K: torch.Tensor,
                world_to_camera: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The image rows where the body proxy (`_proxy_ends`: capsule ends `(N, 2G, 3)`, radii `(N, 2G)`) begins and
    ends in a camera: top, bottom `(N,)`."""
    from dimo_engine.camera import project_points

    uv, depth = project_points(points, K, world_to_camera)  # (N, 2G, 2), (N, 2G)
    radius_px = radii * K[1, 1] / depth.clamp_min(1e-3)
    return (uv[..., 1] - radius_px).amin(dim=1), (uv[..., 1] + radius_px).amax(dim=1)


def height_in_view(alpha: np.ndarray, K: np.ndarray, world_to_camera: np.ndarray, body_joints: torch.Tensor,
                   threshold: int = 128) -> float | None:
    """How tall, in metres, the character whose matte is `alpha` `(H, W)` uint8 stands, seen by a camera `K`
    `(3, 3)` (for that image's size) and `world_to_camera` `(4, 4)` in the character frame (the ground is Z = 0),
    in the pose of `body_joints` `(22, 3)` (character frame, any size: the body faces -Y, as the camera sees it).

    The body proxy in that pose (`character_layer.PROXY_SEGMENTS`), standing on the ground where the ray of the
    matte's lowest pixel meets it (or up to 0.9 m beyond, as its feet reach towards the camera), is sized and moved
    along the view until its top and bottom rows are the matte's: crouched, bent, arms raised or seen from above,
    the body's own reach is accounted for. None when the matte cannot say: empty, cut by the image's top or bottom
    edge, or its lowest point not on a ray that meets the ground in front of the camera."""
    rows = np.flatnonzero((alpha >= threshold).any(axis=1))
    if rows.size == 0 or rows[0] == 0 or rows[-1] == alpha.shape[0] - 1:
        return None
    top, bottom = _matte_edges(alpha, threshold)
    camera_to_world = np.linalg.inv(world_to_camera)
    centre = np.flatnonzero(alpha[rows[-1]] >= threshold).mean() + 0.5
    origin, ray = camera_to_world[:3, 3], camera_to_world[:3, :3] @ (np.linalg.inv(K) @ np.array([centre, bottom, 1.0]))
    if ray[2] >= -1e-9:
        return None
    ground = origin + ray * (-origin[2] / ray[2])
    away = (ground - origin) * np.array([1.0, 1.0, 0.0])
    away /= max(float(np.linalg.norm(away)), 1e-9)

    # The pose as the character frame holds it (facing -Y, as the camera sees it there), its root over the origin.
    pose = body_joints.double().cpu()
    pose = pose * (PROXY_BODY_HEIGHT_M / motion_height(pose[None]))
    pose = pose - pose[0] * pose.new_tensor([1.0, 1.0, 0.0])
    K_t, world_to_camera_t = torch.from_numpy(K).double(), torch.from_numpy(world_to_camera).double()

    def fit(scales: torch.Tensor, beyond: torch.Tensor) -> tuple[float, float]:
        """The scale and the distance beyond `ground` (grids of each) whose proxy's rows come closest to the matte's."""
        grid_scale, grid_beyond = (g.reshape(-1) for g in torch.meshgrid(scales, beyond, indexing="ij"))
        bodies = pose[None] * grid_scale[:, None, None]
        places = torch.from_numpy(ground).double()[None] + grid_beyond[:, None] * torch.from_numpy(away).double()[None]
        points, radii = _proxy_ends(bodies + places[:, None])
        points[..., 2] -= (points[..., 2] - radii).amin(dim=1)[:, None]  # the proxy's lowest point on the ground
        first, last = _proxy_rows(points, radii, K_t, world_to_camera_t)
        miss = (first - top) ** 2 + (last - bottom) ** 2
        best = int(miss.argmin())
        return float(grid_scale[best]), float(grid_beyond[best])

    low, high = (h / PROXY_BODY_HEIGHT_M for h in HEIGHT_RANGE_M)
    grid = partial(torch.linspace, dtype=torch.float64)
    scale, beyond = fit(grid(low, high, 136), grid(0.0, 0.9, 19))  # 2 cm of height, 5 cm of distance
    step = (high - low) / 135
    scale, beyond = fit(grid(scale - step, scale + step, 21), grid(max(beyond - 0.05, 0.0), beyond + 0.05, 11))
    return scale * PROXY_BODY_HEIGHT_M


def _matte_edges(alpha: np.ndarray, threshold: int) -> tuple[float, float]:
    """Where a matte's top and bottom edges lie, in rows to a pixel's fraction (corner convention): in each column,
    a pixel covered by a fraction `a` of the body at its edge is anti-aliased to `a`, so the edge is the first row at
    `threshold` and over, moved by its own and its neighbour's shortfalls; the highest and lowest over the columns."""
    coverage = np.pad(alpha.astype(np.float64) / 255.0, ((1, 1), (0, 0)))
    inside = coverage >= threshold / 255.0
    columns = np.flatnonzero(inside.any(axis=0))
    first = inside[:, columns].argmax(axis=0)
    last = coverage.shape[0] - 1 - inside[::-1, columns].argmax(axis=0)
    top = first + 1.0 - coverage[first, columns] - coverage[first - 1, columns]
    bottom = last + coverage[last, columns] + coverage[last + 1, columns]
    return float(top.min()) - 1.0, float(bottom.max()) - 1.0  # the padding row taken off
