"""The project's own SMPL-H-compatible body model, built procedurally and written as the `.npz`
that `smplx.SMPLH` reads, so licensed SMPL-H files and this one share one loading path.

The mesh is a set of closed lofted tubes, one per body part, swept along the bones through
rings of vertices. Every joint is the exact centroid of one ring, so the joint regressor is
a ring average and stays exact under every shape blend shape. Shape directions are
finite differences of the builder under a change of proportions (height, girth, limbs...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from blender_addon.core.atomic_io import write_npz_atomic
from dimo_engine.body.skeleton import (
    FINGERS,
    JOINT_INDEX,
    NUM_JOINTS,
    SMPLH_PARENTS,
    descendants,
    rest_fingertips,
    rest_joint_positions,
)

BODY_MODEL_NAME = "dimo-smplh-procedural-v1"
NUM_BETAS = 10
# What a +1 step of each beta does, in order (a roughly one-standard-deviation change).
BETA_MEANINGS = (
    "height (uniform scale +5%)",
    "girth (all radii +12%)",
    "leg length (+8%)",
    "arm length (+8%)",
    "torso length (+8%)",
    "shoulder width (+25%)",
    "hip width (+15%)",
    "head size (+10%)",
    "hand size (+10%)",
    "belly (+25% waist depth)",
)
NUM_POSE_BASIS = (NUM_JOINTS - 1) * 9  # SMPL-H pose corrective basis size; left at zero here

J = JOINT_INDEX


@dataclass
class BodyProportions:
    """The free parameters of the builder; shape blend shapes are differences between these."""

    joints: np.ndarray = field(default_factory=rest_joint_positions)  # (52, 3) canonical frame
    girth: float = 1.0
    belly: float = 1.0
    head: float = 1.0
    hand: float = 1.0


@dataclass
class _Station:
    centre: np.ndarray  # (3,)
    rx: float  # radius along the part's width axis
    ry: float  # radius across it
    weights: dict[int, float]


@dataclass
class _Part:
    name: str
    stations: list[_Station]
    width_axis: np.ndarray
    segments: int  # vertices per ring
    spacing: float  # target distance between rings (m)
    regress: dict[int, int] = field(default_factory=dict)  # station index -> joint whose ring it is


def _w(*pairs) -> dict[int, float]:
    """Skinning weights from (joint name, weight) pairs."""
    return {J[name]: float(w) for name, w in pairs}


def _along(a: np.ndarray, b: np.ndarray, distance: float) -> np.ndarray:
    d = b - a
    return a + d * min(distance / max(np.linalg.norm(d), 1e-9), 0.45)


def _limb(name, joints, j0, j1, r0, r1, parent_name, child_name, width_axis, segments=24, spacing=0.018, end=None):
    """A bone from joint j0 to j1 (or `end`), blended half-and-half with its neighbours at each end."""
    a = joints[J[j0]]
    b = joints[J[j1]] if end is None else end
    blend = 0.04
    stations = [
        _Station(a, r0, r0, _w((parent_name, 0.5), (j0, 0.5))),
        _Station(_along(a, b, blend), r0 * 0.97 + r1 * 0.03, r0 * 0.97 + r1 * 0.03, _w((j0, 1.0))),
        _Station(_along(b, a, blend), r1 * 1.03 - r0 * 0.03, r1 * 1.03 - r0 * 0.03, _w((j0, 1.0))),
        _Station(b, r1, r1, _w((j0, 0.5), (child_name, 0.5)) if child_name else _w((j0, 1.0))),
    ]
    regress = {0: J[j0]}
    if end is None and child_name == j1:
        regress[3] = J[j1]
    return _Part(name, stations, np.asarray(width_axis, float), segments, spacing, regress)


def _parts(p: BodyProportions) -> list[_Part]:
    joints = p.joints
    g = p.girth
    parts: list[_Part] = []

    # Torso: one tube from the crotch to the base of the neck, skinned along the spine.
    pelvis, s1, s2, s3, neck = (joints[J[n]] for n in ("pelvis", "spine1", "spine2", "spine3", "neck"))
    hip_half = abs(joints[J["left_hip"]][0])
    shoulder_half = abs(joints[J["left_shoulder"]][0])
    torso = [
        _Station(pelvis + (0, -0.155, 0.0), 0.10 * g * hip_half / 0.088, 0.075 * g, _w(("pelvis", 1))),
        _Station(pelvis + (0, -0.075, 0.0), 0.165 * g * hip_half / 0.088, 0.10 * g, _w(("pelvis", 1))),
        _Station(pelvis, 0.16 * g * hip_half / 0.088, 0.10 * g, _w(("pelvis", 1))),
        _Station(s1, 0.145 * g, 0.095 * g * p.belly, _w(("pelvis", 0.5), ("spine1", 0.5))),
        _Station(s2, 0.14 * g, 0.10 * g * p.belly, _w(("spine1", 0.5), ("spine2", 0.5))),
        _Station(s3, 0.15 * g * shoulder_half / 0.18, 0.105 * g, _w(("spine2", 0.5), ("spine3", 0.5))),
        _Station(s3 + 0.55 * (neck - s3), 0.165 * g * shoulder_half / 0.18, 0.095 * g, _w(("spine3", 1))),
        _Station(s3 + 0.85 * (neck - s3), 0.12 * g * shoulder_half / 0.18, 0.075 * g, _w(("spine3", 1))),
    ]
    parts.append(_Part("torso", torso, np.array([1.0, 0, 0]), 48, 0.016, {2: J["pelvis"], 3: J["spine1"], 4: J["spine2"], 5: J["spine3"]}))

    head_joint = joints[J["head"]]
    parts.append(_Part("neck", [
        _Station(neck, 0.055 * g, 0.055 * g, _w(("spine3", 0.5), ("neck", 0.5))),
        _Station(head_joint, 0.05 * g, 0.05 * g, _w(("neck", 0.5), ("head", 0.5))),
    ], np.array([1.0, 0, 0]), 24, 0.014, {0: J["neck"], 1: J["head"]}))
    h = p.head
    parts.append(_Part("head", [
        _Station(head_joint + h * np.array([0, 0.0, 0.01]), 0.055 * h, 0.065 * h, _w(("head", 1))),
        _Station(head_joint + h * np.array([0, 0.06, 0.015]), 0.078 * h, 0.095 * h, _w(("head", 1))),
        _Station(head_joint + h * np.array([0, 0.13, 0.005]), 0.075 * h, 0.09 * h, _w(("head", 1))),
    ], np.array([1.0, 0, 0]), 40, 0.012))

    for side in ("left", "right"):
        sign = 1.0 if side == "left" else -1.0
        n = lambda name: f"{side}_{name}"  # noqa: E731
        parts.append(_limb(n("collar"), joints, n("collar"), n("shoulder"), 0.05 * g, 0.055 * g, "spine3", n("shoulder"), (0, 0, 1), 20))
        parts.append(_limb(n("upper_arm"), joints, n("shoulder"), n("elbow"), 0.052 * g, 0.04 * g, n("collar"), n("elbow"), (0, 0, 1)))
        parts.append(_limb(n("forearm"), joints, n("elbow"), n("wrist"), 0.04 * g, 0.028 * g, n("shoulder"), n("wrist"), (0, 0, 1)))
        parts.append(_limb(n("thigh"), joints, n("hip"), n("knee"), 0.085 * g, 0.052 * g, "pelvis", n("knee"), (1, 0, 0)))
        parts.append(_limb(n("calf"), joints, n("knee"), n("ankle"), 0.052 * g, 0.036 * g, n("hip"), n("ankle"), (1, 0, 0)))

        # Foot: heel to ball skinned to the ankle, toes to the foot joint; sole on the floor.
        ankle, ball = joints[J[n("ankle")]], joints[J[n("foot")]]
        floor = ball[1] - 0.025
        parts.append(_Part(n("foot"), [
            _Station(np.array([ankle[0], floor + 0.035, ankle[2] - 0.055]), 0.032 * g, 0.035, _w((n("ankle"), 1))),
            _Station(np.array([ankle[0] + sign * 0.003, floor + 0.04, ankle[2] + 0.04]), 0.042 * g, 0.04, _w((n("ankle"), 1))),
            _Station(ball.copy(), 0.045 * g, 0.025, _w((n("ankle"), 0.5), (n("foot"), 0.5))),
        ], np.array([1.0, 0, 0]), 20, 0.014))
        parts.append(_Part(n("toes"), [
            _Station(ball.copy(), 0.045 * g, 0.025, _w((n("ankle"), 0.5), (n("foot"), 0.5))),
            _Station(ball + np.array([-sign * 0.005, -0.005, 0.05]), 0.04 * g, 0.018, _w((n("foot"), 1))),
        ], np.array([1.0, 0, 0]), 20, 0.012, {0: J[n("foot")]}))

        # Palm from the wrist to the middle knuckle, flat across the hand.
        wrist, knuckle = joints[J[n("wrist")]], joints[J[n("middle1")]]
        hs = p.hand
        parts.append(_Part(n("palm"), [
            _Station(wrist, 0.03 * hs, 0.02 * hs, _w((n("elbow"), 0.5), (n("wrist"), 0.5))),
            _Station(_along(wrist, knuckle, 0.025), 0.042 * hs, 0.018 * hs, _w((n("wrist"), 1))),
            _Station(knuckle, 0.046 * hs, 0.014 * hs, _w((n("wrist"), 1))),
        ], np.array([0, 0, 1.0]), 20, 0.01, {0: J[n("wrist")]}))

        tips = p_fingertips(p, side)
        for finger in FINGERS:
            radius = (0.011 if finger == "thumb" else 0.0095) * hs
            for k in (1, 2, 3):
                name = n(f"{finger}{k}")
                parent = n("wrist") if k == 1 else n(f"{finger}{k - 1}")
                child = n(f"{finger}{k + 1}") if k < 3 else None  # the third phalanx ends at the fingertip
                width_axis = (0, 1, 0) if finger == "thumb" else (0, 0, 1)
                parts.append(_limb(name, joints, name, child or name, radius, radius * 0.9, parent, child, width_axis,
                                   segments=8, spacing=0.01, end=None if child else tips[finger]))
    return parts


def p_fingertips(p: BodyProportions, side: str) -> dict[str, np.ndarray]:
    """Fingertips follow the third phalanx of the current proportions (rest tip offsets scaled by hand size)."""
    rest = rest_joint_positions()
    tips = rest_fingertips()
    out = {}
    for finger in FINGERS:
        j3 = J[f"{side}_{finger}3"]
        out[finger] = p.joints[j3] + p.hand * (tips[f"{side}_{finger}"] - rest[j3])
    return out


def _ring_frame(direction: np.ndarray, width_axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = direction / np.linalg.norm(direction)
    u = width_axis - np.dot(width_axis, d) * d
    if np.linalg.norm(u) < 1e-6:  # width axis along the bone: pick any perpendicular
        u = np.cross(d, [0.0, 1.0, 0.0] if abs(d[1]) < 0.9 else [1.0, 0.0, 0.0])
    u = u / np.linalg.norm(u)
    return u, np.cross(d, u)


def _loft(part: _Part, ring_counts: list[int] | None = None):
    """Rings of vertices along the stations plus rounded, closed ends.

    `ring_counts` (rings per station gap) fixes the topology so shape variants match the base.
    Returns vertices (N, 3), faces (M, 3) local, weights (N, 52), axis points (N, 3),
    {joint: vertex ids of its ring} and the ring counts used.
    """
    st = part.stations
    centres = np.stack([s.centre for s in st])  # (S, 3)
    seg_dirs = np.diff(centres, axis=0)
    # Interpolated ring parameters: (station segment, fraction)
    if ring_counts is None:
        ring_counts = [max(1, int(np.ceil(np.linalg.norm(d) / part.spacing))) for d in seg_dirs]
    rings = []  # (station gap, fraction along it)
    for i, count in enumerate(ring_counts):
        for k in range(count):
            f = k / count
            rings.append((i, f))
    rings.append((len(st) - 2, 1.0))

    def station_dir(i: int) -> np.ndarray:
        if i == 0:
            return seg_dirs[0]
        if i == len(st) - 1:
            return seg_dirs[-1]
        a, b = seg_dirs[i - 1], seg_dirs[i]
        return a / np.linalg.norm(a) + b / np.linalg.norm(b)

    def weights_vec(ws: dict[int, float]) -> np.ndarray:
        v = np.zeros(NUM_JOINTS)
        for j, w in ws.items():
            v[j] = w
        return v

    theta = np.linspace(0.0, 2.0 * np.pi, part.segments, endpoint=False)
    verts, wts, axis_pts, ring_ids = [], [], [], {}
    ring_rows = []
    for i, f in rings:
        a, b = st[i], st[i + 1]
        centre = (1 - f) * a.centre + f * b.centre
        rx, ry = (1 - f) * a.rx + f * b.rx, (1 - f) * a.ry + f * b.ry
        w = (1 - f) * weights_vec(a.weights) + f * weights_vec(b.weights)
        direction = (1 - f) * station_dir(i) + f * station_dir(i + 1) if 0 < f < 1 else station_dir(i if f == 0 else i + 1)
        u, v = _ring_frame(direction, part.width_axis)
        ring = centre + rx * np.cos(theta)[:, None] * u + ry * np.sin(theta)[:, None] * v
        station = i if f == 0 else (i + 1 if f == 1 else None)
        if station is not None and station in part.regress:
            start = sum(len(r) for r in verts)
            ring_ids[part.regress[station]] = np.arange(start, start + len(ring))
        verts.append(ring)
        wts.append(np.repeat(w[None], len(ring), axis=0))
        axis_pts.append(np.repeat(centre[None], len(ring), axis=0))
        ring_rows.append((centre, rx, ry, w, direction))

    # Rounded ends: shrinking rings then a pole, each end keeps its station's weights.
    def cap(end: int):
        centre, rx, ry, w, direction = ring_rows[end]
        d = direction / np.linalg.norm(direction) * (1 if end == -1 else -1)
        u, v = _ring_frame(direction, part.width_axis)
        reach = 0.5 * (rx + ry)
        cap_rings = []
        for phi in np.radians((35.0, 65.0)):
            c = centre + d * reach * np.sin(phi)
            cap_rings.append(c + np.cos(phi) * (rx * np.cos(theta)[:, None] * u + ry * np.sin(theta)[:, None] * v))
        pole = centre + d * reach
        return cap_rings, pole, w, centre

    n = part.segments
    body = np.concatenate(verts)
    body_w = np.concatenate(wts)
    body_axis = np.concatenate(axis_pts)
    num_rings = len(verts)
    faces = []
    for r in range(num_rings - 1):
        for k in range(n):
            a, b = r * n + k, r * n + (k + 1) % n
            c, d = a + n, b + n
            faces += [(a, b, c), (b, d, c)]
    extra_v, extra_w, extra_axis = [], [], []
    offset = len(body)
    for end in (0, -1):
        cap_rings, pole, w, centre = cap(end)
        prev = np.arange(n) if end == 0 else np.arange((num_rings - 1) * n, num_rings * n)
        for ring in cap_rings:
            ids = np.arange(offset, offset + n)
            extra_v.append(ring)
            extra_w.append(np.repeat(w[None], n, axis=0))
            extra_axis.append(np.repeat(centre[None], n, axis=0))
            for k in range(n):
                a, b, c, d = prev[k], prev[(k + 1) % n], ids[k], ids[(k + 1) % n]
                faces += [(a, b, c), (b, d, c)] if end == -1 else [(a, c, b), (b, c, d)]
            prev, offset = ids, offset + n
        extra_v.append(pole[None])
        extra_w.append(w[None])
        extra_axis.append(centre[None])
        for k in range(n):
            a, b = prev[k], prev[(k + 1) % n]
            faces.append((a, b, offset) if end == -1 else (a, offset, b))
        offset += 1
    vertices = np.concatenate([body] + extra_v)
    weights = np.concatenate([body_w] + extra_w)
    axis = np.concatenate([body_axis] + extra_axis)
    return vertices, np.array(faces, dtype=np.int64), weights, axis, ring_ids, ring_counts


@dataclass
class _BuiltMesh:
    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (T, 3)
    weights: np.ndarray  # (V, 52)
    axis: np.ndarray  # (V, 3) the point on the part's axis each vertex was swept around
    joint_rings: dict[int, np.ndarray]
    part_of_vertex: np.ndarray  # (V,) part index
    layout: list[list[int]]  # rings per station gap of every part


def build_mesh(proportions: BodyProportions, layout: list[list[int]] | None = None) -> _BuiltMesh:
    """Loft every part; pass the base mesh's `layout` to get the same topology for other proportions."""
    verts, faces, weights, axis, rings, part_ids, counts = [], [], [], [], {}, [], []
    offset = 0
    for index, part in enumerate(_parts(proportions)):
        v, f, w, a, r, c = _loft(part, None if layout is None else layout[index])
        counts.append(c)
        verts.append(v)
        faces.append(f + offset)
        weights.append(w)
        axis.append(a)
        part_ids.append(np.full(len(v), index))
        for joint, ids in r.items():
            rings.setdefault(joint, ids + offset)
        offset += len(v)
    weights = np.concatenate(weights)
    weights /= weights.sum(axis=1, keepdims=True)
    return _BuiltMesh(np.concatenate(verts), np.concatenate(faces), weights, np.concatenate(axis), rings,
                      np.concatenate(part_ids), counts)


def _scaled_chain(joints: np.ndarray, root: str, scale: float, stop_at: tuple[str, ...] = ()) -> np.ndarray:
    """Lengthen every bone below `root` by `scale` (children move with their parents)."""
    out = joints.copy()
    below = descendants(J[root])
    for j in sorted(below):
        if j == J[root]:
            continue
        parent = SMPLH_PARENTS[j]
        out[j] = out[parent] + (joints[j] - joints[parent]) * (scale if parent in below and SMPLH_PARENTS[j] not in [J[s] for s in stop_at] else 1.0)
    return out


def _shape_variant(base: BodyProportions, k: int) -> BodyProportions:
    """The proportions at beta_k = +1 (all other betas zero)."""
    joints = base.joints.copy()
    if k == 1:
        return replace(base, girth=base.girth * 1.12)
    if k == 2:
        for side in ("left", "right"):
            joints = _scaled_chain(joints, f"{side}_hip", 1.08, stop_at=(f"{side}_ankle",))
        return replace(base, joints=joints)
    if k == 3:
        for side in ("left", "right"):
            joints = _scaled_chain(joints, f"{side}_shoulder", 1.08, stop_at=(f"{side}_wrist",))
        return replace(base, joints=joints)
    if k == 4:
        return replace(base, joints=_scaled_chain(joints, "pelvis", 1.08, stop_at=("left_hip", "right_hip", "left_collar", "right_collar")))
    if k == 5:
        for side in ("left", "right"):
            collar = J[f"{side}_collar"]
            shift = (joints[J[f"{side}_shoulder"]] - joints[collar]) * 0.25
            for j in descendants(J[f"{side}_shoulder"]):
                joints[j] = joints[j] + shift
        return replace(base, joints=joints)
    if k == 6:
        for side in ("left", "right"):
            shift = np.array([joints[J[f"{side}_hip"]][0] * 0.15, 0.0, 0.0])
            for j in descendants(J[f"{side}_hip"]):
                joints[j] = joints[j] + shift
        return replace(base, joints=joints)
    if k == 7:
        return replace(base, head=base.head * 1.10)
    if k == 8:
        for side in ("left", "right"):
            wrist = joints[J[f"{side}_wrist"]]
            for j in descendants(J[f"{side}_wrist"]):
                joints[j] = wrist + (joints[j] - wrist) * 1.10
        return replace(base, joints=joints, hand=base.hand * 1.10)
    if k == 9:
        return replace(base, belly=base.belly * 1.25)
    raise ValueError(k)


# SMPL-H vertex ids that smplx reads as extra joints (nose, eyes, ears, fingertips, toes,
# heels); the procedural mesh puts a matching vertex at each id.
_LANDMARK_IDS = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583,
    "rthumb": 6191, "rindex": 5782, "rmiddle": 5905, "rring": 6016, "rpinky": 6133,
    "lthumb": 2746, "lindex": 2319, "lmiddle": 2445, "lring": 2556, "lpinky": 2673,
    "LBigToe": 3216, "LSmallToe": 3226, "LHeel": 3387, "RBigToe": 6617, "RSmallToe": 6624, "RHeel": 6787,
}


def _landmark_targets(p: BodyProportions) -> dict[str, np.ndarray]:
    joints = p.joints
    head = joints[J["head"]]
    targets = {
        "nose": head + (0.0, 0.06, 0.12), "reye": head + (-0.035, 0.085, 0.10), "leye": head + (0.035, 0.085, 0.10),
        "rear": head + (-0.09, 0.07, 0.0), "lear": head + (0.09, 0.07, 0.0),
    }
    for side, s in (("left", "l"), ("right", "r")):
        tips = p_fingertips(p, side)
        for finger in FINGERS:
            targets[f"{s}{finger}"] = tips[finger] + 0.02 * (tips[finger] - joints[J[f"{side}_{finger}3"]])
        sign = 1.0 if side == "left" else -1.0
        ball, ankle = joints[J[f"{side}_foot"]], joints[J[f"{side}_ankle"]]
        S = s.upper()
        targets[f"{S}BigToe"] = ball + (-sign * 0.02, -0.01, 0.07)
        targets[f"{S}SmallToe"] = ball + (sign * 0.035, -0.01, 0.05)
        targets[f"{S}Heel"] = np.array([ankle[0], ball[1] - 0.01, ankle[2] - 0.10])
    return targets


def _landmark_permutation(vertices: np.ndarray, p: BodyProportions) -> np.ndarray:
    """perm[new_index] = old_index, moving the vertex nearest each landmark to its SMPL-H id."""
    perm = np.arange(len(vertices))
    position = np.arange(len(vertices))  # old index -> new index
    for name, target in _landmark_targets(p).items():
        old = int(np.argmin(np.linalg.norm(vertices - target, axis=1)))
        new_slot, old_slot = _LANDMARK_IDS[name], position[old]
        displaced = perm[new_slot]
        perm[new_slot], perm[old_slot] = old, displaced
        position[old], position[displaced] = new_slot, old_slot
    return perm


def make_body_model_data(seed: int = 0) -> dict[str, np.ndarray]:
    """All arrays of the procedural SMPL-H body (the fields `smplx.SMPLH` reads), deterministic.

    `seed` is recorded and reserved for appearance-free variants; the geometry does not depend on it.
    """
    base = BodyProportions()
    mesh = build_mesh(base)
    V = len(mesh.vertices)
    shapedirs = np.zeros((V, 3, NUM_BETAS))
    floor = np.array([0.0, base.joints[J["left_foot"]][1] - 0.025, 0.0])
    shapedirs[:, :, 0] = 0.05 * (mesh.vertices - floor)
    for k in range(1, NUM_BETAS):
        shapedirs[:, :, k] = build_mesh(_shape_variant(base, k), mesh.layout).vertices - mesh.vertices

    regressor = np.zeros((NUM_JOINTS, V))
    for joint in range(NUM_JOINTS):
        ids = mesh.joint_rings[joint]
        regressor[joint, ids] = 1.0 / len(ids)

    perm = _landmark_permutation(mesh.vertices, base)
    inverse = np.empty_like(perm)
    inverse[perm] = np.arange(V)

    kintree = np.stack([SMPLH_PARENTS, np.arange(NUM_JOINTS)]).astype(np.int64)
    kintree[0, 0] = 4294967295  # SMPL files store the root's parent as uint32 -1
    # Identity hand "PCA": with use_pca=True the first components are plain finger rotations.
    hand_mean = _relaxed_hand_mean()
    return {
        "v_template": mesh.vertices[perm],
        "f": inverse[mesh.faces].astype(np.uint32),
        "J_regressor": regressor[:, perm],
        "weights": mesh.weights[perm],
        "kintree_table": kintree,
        "shapedirs": shapedirs[perm],
        "posedirs": np.zeros((V, 3, NUM_POSE_BASIS), dtype=np.float32),  # float32: it is large and all zero
        "hands_componentsl": np.eye(45),
        "hands_componentsr": np.eye(45),
        "hands_meanl": hand_mean["left"],
        "hands_meanr": hand_mean["right"],
        "model_name": np.array(BODY_MODEL_NAME),
        "seed": np.array(seed),
        "beta_meanings": np.array(BETA_MEANINGS),
    }


def _relaxed_hand_mean() -> dict[str, np.ndarray]:
    """A slight natural finger curl, the 'mean hand' smplx adds unless flat_hand_mean=True."""
    curl = np.zeros((15, 3))
    for f, finger in enumerate(FINGERS):
        for k in range(3):
            if finger != "thumb":
                curl[3 * f + k, 2] = 0.15 + 0.05 * k  # about the canonical Z axis: fingers bend downwards
    left = curl.copy()
    right = curl.copy()
    right[:, 2] *= -1.0  # mirrored hand bends the other way about Z
    return {"left": -left.reshape(-1), "right": -right.reshape(-1)}


def make_body_model_file(path: str | os.PathLike, seed: int = 0) -> Path:
    """Write the procedural body model `.npz` at `path` atomically and return the path."""
    return write_npz_atomic(path, make_body_model_data(seed), compressed=True)
