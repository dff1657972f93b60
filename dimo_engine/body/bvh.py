"""BVH motion capture import: parse a BVH file and retarget it to SMPL-H pose sequences in the
character frame, so real mocap can drive training clips.

Retargeting is by joint name (`BVH_JOINT_ALIASES`, documented below) and by world-space bone
direction: each SMPL-H joint gets the world rotation of its BVH joint, corrected by the
rotation between the two skeletons' rest bone directions, so a BVH in A-pose or T-pose both
work. Units (centimetres, metres, inches) are detected from the rest skeleton's height, and
the up and facing axes from its hips, head and left/right joints.

Name mapping (case, spaces, underscores and a namespace like `mixamorig:` are ignored; a
`Left`/`Right` or `L`/`R` prefix or suffix picks the side):

| SMPL-H | BVH names |
| --- | --- |
| pelvis | Hips, Pelvis, Hip, Root |
| spine1..spine3 | the joints between the hips and the neck, in order (Spine, Spine1, Spine2, Chest, LowerBack, UpperChest...) |
| neck, head | Neck (Neck1 ignored), Head |
| *_hip, *_knee, *_ankle, *_foot | UpLeg / Thigh / Hip, Leg / Knee / Shin, Foot / Ankle, ToeBase / Toe / Toes |
| *_collar, *_shoulder | Shoulder / Collar / Clavicle, Arm / UpperArm / Humerus |
| *_elbow, *_wrist | ForeArm / Elbow / LowerArm, Hand / Wrist |
| fingers | HandIndex1-3, Index1-3 (also Middle, Ring, Pinky or Little, Thumb) |

Joints with no match keep the pose of their parent (hands stay flat when the BVH has no fingers).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import roma
import torch

from dimo_engine.body.motion_sequence import MotionSequence
from dimo_engine.body.skeleton import CANONICAL_TO_CHARACTER, JOINT_INDEX, NUM_JOINTS, SMPLH_PARENTS
from dimo_engine.errors import InputError

# Body part names after the side prefix is removed, lower case, no separators.
BVH_JOINT_ALIASES: dict[str, tuple[str, ...]] = {
    "pelvis": ("hips", "pelvis", "hip", "root"),
    "neck": ("neck",),
    "head": ("head",),
    "hip": ("upleg", "thigh", "hip", "upperleg", "femur"),
    "knee": ("leg", "knee", "shin", "lowerleg", "tibia", "calf"),
    "ankle": ("foot", "ankle"),
    "foot": ("toebase", "toe", "toes", "ball"),
    "collar": ("shoulder", "collar", "clavicle"),
    "shoulder": ("arm", "upperarm", "humerus", "shldr"),
    "elbow": ("forearm", "elbow", "lowerarm", "radius"),
    "wrist": ("hand", "wrist"),
}
_FINGER_WORDS = {"index": ("index",), "middle": ("middle",), "ring": ("ring",), "pinky": ("pinky", "little", "pinkie"), "thumb": ("thumb",)}


@dataclass
class BvhJoint:
    name: str
    parent: int
    offset: np.ndarray  # (3,) in file units, parent frame
    channels: list[str] = field(default_factory=list)
    end_offset: np.ndarray | None = None  # End Site offset, when the joint is a leaf


@dataclass
class BvhFile:
    joints: list[BvhJoint]
    frame_time: float
    motion: np.ndarray  # (F, total channels) as in the file (degrees, file units)


def parse_bvh(path: str | os.PathLike) -> BvhFile:
    """Read a BVH file's hierarchy and motion data; one clear error for malformed files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise InputError(f"{path}: cannot read the BVH file ({error.strerror}); check the path") from error
    tokens = text.split()
    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise InputError(f"{path}: not a BVH file (it must start with HIERARCHY); export the motion as BVH")
    joints: list[BvhJoint] = []
    stack: list[int] = []
    i = 1
    try:
        while tokens[i].upper() != "MOTION":
            word = tokens[i].upper()
            if word in ("ROOT", "JOINT"):
                joints.append(BvhJoint(tokens[i + 1], stack[-1] if stack else -1, np.zeros(3)))
                i += 2
            elif word == "END":  # End Site { OFFSET x y z }
                if tokens[i + 2] != "{" or tokens[i + 3].upper() != "OFFSET":
                    raise ValueError("End Site without OFFSET")
                joints[stack[-1]].end_offset = np.array([float(v) for v in tokens[i + 4:i + 7]])
                if tokens[i + 7] != "}":
                    raise ValueError("End Site not closed")
                i += 8
            elif word == "{":
                stack.append(len(joints) - 1)
                i += 1
            elif word == "}":
                stack.pop()
                i += 1
            elif word == "OFFSET":
                joints[stack[-1]].offset = np.array([float(v) for v in tokens[i + 1:i + 4]])
                i += 4
            elif word == "CHANNELS":
                count = int(tokens[i + 1])
                joints[stack[-1]].channels = tokens[i + 2:i + 2 + count]
                i += 2 + count
            else:
                raise ValueError(f"unexpected '{tokens[i]}'")
        if tokens[i + 1].rstrip(":").upper() != "FRAMES" or tokens[i + 3].upper() != "FRAME" or tokens[i + 4].rstrip(":").upper() != "TIME":
            raise ValueError("MOTION must give 'Frames:' and 'Frame Time:'")
        frames = int(tokens[i + 2])
        frame_time = float(tokens[i + 5])
        values = np.array([float(v) for v in tokens[i + 6:]], dtype=np.float64)
    except (IndexError, ValueError) as error:
        raise InputError(f"{path}: malformed BVH ({error}); re-export the file") from error
    if not joints:
        raise InputError(f"{path}: the BVH hierarchy has no joints; export a skeleton with the motion")
    width = sum(len(j.channels) for j in joints)
    if frames < 1 or values.size < frames * width:
        raise InputError(f"{path}: the BVH declares {frames} frames of {width} channels but holds {values.size} values; re-export the file")
    if not (frame_time > 0 and np.isfinite(values).all()):
        raise InputError(f"{path}: the BVH frame time must be positive and all values finite; re-export the file")
    return BvhFile(joints, frame_time, values[: frames * width].reshape(frames, width))


def _normalise(name: str) -> str:
    name = name.split(":")[-1].split("|")[-1]
    return re.sub(r"[\s_.\-]", "", name).lower()


def _side_and_part(name: str) -> tuple[str | None, str]:
    n = _normalise(name)
    for prefix, side in (("left", "left"), ("right", "right")):
        if n.startswith(prefix):
            return side, n[len(prefix):]
        if n.endswith(prefix):
            return side, n[: -len(prefix)]
    if len(n) > 2 and n[0] in "lr" and not n.startswith(("leg", "low", "root")):
        return ("left" if n[0] == "l" else "right"), n[1:]
    if len(n) > 2 and n[-1] in "lr" and n[:-1] in _all_parts():
        return ("left" if n[-1] == "l" else "right"), n[:-1]
    return None, n


def _all_parts() -> set[str]:
    return {alias for aliases in BVH_JOINT_ALIASES.values() for alias in aliases}


def _finger_target(side: str, part: str) -> str | None:
    part = part.removeprefix("hand").removeprefix("finger")
    for finger, words in _FINGER_WORDS.items():
        for word in words:
            if part.startswith(word):
                rest = part[len(word):]
                if rest in ("1", "2", "3"):
                    return f"{side}_{finger}{rest}"
                if rest == "":
                    return f"{side}_{finger}1"
    return None


def map_bvh_joints(joints: list[BvhJoint]) -> dict[int, int]:
    """{SMPL-H joint index: BVH joint index} by the documented name mapping."""
    mapping: dict[int, int] = {}
    for index, joint in enumerate(joints):
        side, part = _side_and_part(joint.name)
        target = None
        if side is None:
            for smplh in ("pelvis", "neck", "head"):
                if part in BVH_JOINT_ALIASES[smplh]:
                    target = smplh
        else:
            target = _finger_target(side, part)
            if target is None:
                for smplh in ("hip", "knee", "ankle", "foot", "collar", "shoulder", "elbow", "wrist"):
                    if part in BVH_JOINT_ALIASES[smplh]:
                        target = f"{side}_{smplh}"
                        break
        if target is not None and JOINT_INDEX[target] not in mapping:
            mapping[JOINT_INDEX[target]] = index
    if JOINT_INDEX["pelvis"] not in mapping:
        mapping[JOINT_INDEX["pelvis"]] = 0  # the root is the pelvis whatever its name
    # Spine: the chain between the pelvis and the neck, first/middle/last to spine1/2/3.
    neck = mapping.get(JOINT_INDEX["neck"], mapping.get(JOINT_INDEX["head"]))
    if neck is not None:
        chain = []
        j = joints[neck].parent
        while j >= 0 and j != mapping[JOINT_INDEX["pelvis"]]:
            chain.append(j)
            j = joints[j].parent
        chain = chain[::-1]
        if chain:
            picks = {"spine1": chain[0], "spine3": chain[-1]}
            if len(chain) >= 3:
                picks["spine2"] = chain[len(chain) // 2]
            for name, j in picks.items():
                mapping.setdefault(JOINT_INDEX[name], j)
    return mapping


def _euler_rotations(bvh: BvhFile) -> tuple[np.ndarray, np.ndarray]:
    """Local rotation matrices (F, J, 3, 3) and root positions (F, 3), file axes and units."""
    F, J = bvh.motion.shape[0], len(bvh.joints)
    local = np.tile(np.eye(3), (F, J, 1, 1))
    root_position = np.zeros((F, 3))
    column = 0
    for j, joint in enumerate(bvh.joints):
        rotation = torch.eye(3, dtype=torch.float64).repeat(F, 1, 1)
        for channel in joint.channels:
            values = torch.as_tensor(bvh.motion[:, column])
            kind = channel.lower()
            if kind.endswith("position"):
                if j == 0:
                    root_position[:, "xyz".index(kind[0])] = values.numpy()
            elif kind.endswith("rotation"):
                axis = torch.zeros(F, 3, dtype=torch.float64)
                axis[:, "xyz".index(kind[0])] = torch.deg2rad(values)
                rotation = rotation @ roma.rotvec_to_rotmat(axis)  # channels listed outermost first
            else:
                raise InputError(f"BVH joint '{joint.name}': unknown channel '{channel}'; re-export with X/Y/Z position and rotation channels")
            column += 1
        local[:, j] = rotation.numpy()
    return local, root_position


def _global_transforms(bvh: BvhFile, local: np.ndarray, root_position: np.ndarray):
    """World rotations (F, J, 3, 3) and positions (F, J, 3), file axes and units."""
    F, J = local.shape[:2]
    rot = np.zeros_like(local)
    pos = np.zeros((F, J, 3))
    for j, joint in enumerate(bvh.joints):
        if joint.parent < 0:
            rot[:, j] = local[:, j]
            pos[:, j] = joint.offset + root_position
        else:
            rot[:, j] = rot[:, joint.parent] @ local[:, j]
            pos[:, j] = pos[:, joint.parent] + rot[:, joint.parent] @ joint.offset
    return rot, pos


def _rest_positions(bvh: BvhFile) -> np.ndarray:
    pos = np.zeros((len(bvh.joints), 3))
    for j, joint in enumerate(bvh.joints):
        pos[j] = joint.offset + (pos[joint.parent] if joint.parent >= 0 else 0.0)
    return pos


def _unit_scale(height: float) -> float:
    """Metres per file unit from the rest skeleton's height (head above the feet)."""
    if height > 20.0:
        return 0.01  # centimetres (a person is 100-220 cm)
    if height > 3.0:
        return 0.0254  # inches (40-90 in)
    return 1.0  # metres


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (3, 3) taking direction a to direction b."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-9:
        if c > 0:
            return np.eye(3)
        perpendicular = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return roma.rotvec_to_rotmat(torch.as_tensor(perpendicular / np.linalg.norm(perpendicular) * np.pi)).numpy()
    return roma.rotvec_to_rotmat(torch.as_tensor(axis / s * np.arctan2(s, c))).numpy()


def load_bvh(path: str | os.PathLike, fps: float | None = None, betas=None) -> MotionSequence:
    """Retarget a BVH file to an SMPL-H `MotionSequence` (character frame, metres), resampled to
    `fps` when given. Root placed for the procedural body with `betas`: pelvis above the
    origin facing -Y at frame 0, lowest foot on the ground over the sequence."""
    from dimo_engine.body.kinematics import procedural_rest_joints, sole_points

    path = Path(path)
    bvh = parse_bvh(path)
    mapping = map_bvh_joints(bvh.joints)
    needed = ("pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "head")
    missing = [n for n in needed if JOINT_INDEX[n] not in mapping]
    if missing:
        raise InputError(f"{path}: no BVH joint matches {', '.join(missing)}; rename the joints (see BVH_JOINT_ALIASES in dimo_engine/body/bvh.py)")

    rest_bvh = _rest_positions(bvh)
    pelvis_b = mapping[JOINT_INDEX["pelvis"]]
    up = rest_bvh[mapping[JOINT_INDEX["head"]]] - rest_bvh[pelvis_b]
    left = rest_bvh[mapping[JOINT_INDEX["left_hip"]]] - rest_bvh[mapping[JOINT_INDEX["right_hip"]]]
    up_axis = np.zeros(3)
    up_axis[np.argmax(np.abs(up))] = np.sign(up[np.argmax(np.abs(up))])
    left = left - np.dot(left, up_axis) * up_axis
    left /= np.linalg.norm(left)
    forward = np.cross(left, up_axis)
    to_canonical = np.stack([left, up_axis, forward])  # rows: file axes -> SMPL canonical (x left, y up, z forward)

    feet = [mapping[JOINT_INDEX[n]] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot", "left_knee", "right_knee") if JOINT_INDEX[n] in mapping]
    height = float(np.max(rest_bvh[mapping[JOINT_INDEX["head"]]] @ up_axis - rest_bvh[feet] @ up_axis))
    scale = _unit_scale(height)

    local, root_position = _euler_rotations(bvh)
    frames = local.shape[0]
    if fps is not None:
        local, root_position = _resample(local, root_position, bvh.frame_time, float(fps))
        frames = local.shape[0]
    out_fps = float(fps) if fps is not None else 1.0 / bvh.frame_time
    world_rot, world_pos = _global_transforms(bvh, local, root_position)
    A = to_canonical
    world_rot = np.einsum("ij,fkjl,ml->fkim", A, world_rot, A)  # A R A^T: rotations in canonical axes

    # Rest correction: SMPL-H bone direction -> BVH rest bone direction, per mapped joint.
    smplh_rest = procedural_rest_joints(betas)
    children = {j: [c for c in range(NUM_JOINTS) if SMPLH_PARENTS[c] == j] for j in range(NUM_JOINTS)}
    bvh_rest_canon = rest_bvh @ A.T
    correction = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for joint, b in mapping.items():
        child = _mapped_child(joint, mapping, children)
        if child is None:
            continue
        smpl_dir = smplh_rest[child] - smplh_rest[joint]
        bvh_dir = bvh_rest_canon[mapping[child]] - bvh_rest_canon[b]
        if np.linalg.norm(bvh_dir) > 1e-9 and joint != JOINT_INDEX["pelvis"]:
            correction[joint] = _rotation_between(smpl_dir, bvh_dir)

    # World rotation of every SMPL-H joint (unmapped ones inherit their parent's), then local.
    smpl_world = np.zeros((frames, NUM_JOINTS, 3, 3))
    for joint in range(NUM_JOINTS):
        if joint in mapping:
            smpl_world[:, joint] = world_rot[:, mapping[joint]] @ correction[joint]
        else:
            smpl_world[:, joint] = smpl_world[:, SMPLH_PARENTS[joint]]
    smpl_local = np.zeros_like(smpl_world)
    smpl_local[:, 0] = smpl_world[:, 0]
    for joint in range(1, NUM_JOINTS):
        smpl_local[:, joint] = np.swapaxes(smpl_world[:, SMPLH_PARENTS[joint]], -1, -2) @ smpl_world[:, joint]

    # Character frame: canonical -> Z up, then turn so frame 0 faces -Y.
    root = CANONICAL_TO_CHARACTER @ smpl_world[0, 0]
    facing = root @ np.array([0.0, 0.0, 1.0])
    yaw = np.arctan2(facing[0], -facing[1])
    turn = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, -yaw], dtype=torch.float64)).numpy() @ CANONICAL_TO_CHARACTER
    smpl_local[:, 0] = turn @ smpl_world[:, 0]

    # Root track: the BVH hips path scaled from its legs to the body's legs.
    leg_bvh = _leg_length(rest_bvh, mapping) * scale
    leg_smpl = _leg_length(smplh_rest, {j: j for j in range(NUM_JOINTS)})
    ratio = leg_smpl / leg_bvh if leg_bvh > 1e-6 else 1.0
    hips = world_pos[:, pelvis_b] @ A.T * scale * ratio  # (F, 3) canonical
    hips = hips @ turn.T
    rot = torch.as_tensor(smpl_local)
    contacts = sole_points(rot, smplh_rest)  # (F, C, 3)
    transl = np.zeros((frames, 3))
    transl[:, :2] = hips[:, :2] - hips[0, :2] - smplh_rest[0, :2]
    transl[:, 2] = hips[:, 2] - (hips[:, 2] + contacts[:, :, 2].min(axis=1)).min()

    rotvec = roma.rotmat_to_rotvec(rot).numpy()
    motion = MotionSequence(
        family=f"bvh:{path.stem}", seed=0, fps=out_fps,
        global_orient=rotvec[:, 0].astype(np.float32), body_pose=rotvec[:, 1:22].astype(np.float32),
        left_hand_pose=rotvec[:, 22:37].astype(np.float32), right_hand_pose=rotvec[:, 37:52].astype(np.float32),
        transl=transl.astype(np.float32), betas=np.zeros(10, np.float32) if betas is None else np.asarray(betas, np.float32),
    )
    return motion.validate(str(path))


def _mapped_child(joint: int, mapping: dict[int, int], children: dict[int, list[int]]) -> int | None:
    """The SMPL-H child that defines this joint's bone direction, when it is mapped too."""
    preferred = {JOINT_INDEX["pelvis"]: JOINT_INDEX["spine1"], JOINT_INDEX["spine3"]: JOINT_INDEX["neck"]}
    for side in ("left", "right"):
        preferred[JOINT_INDEX[f"{side}_wrist"]] = JOINT_INDEX[f"{side}_middle1"]
    candidates = [preferred[joint]] if joint in preferred else children[joint]
    for child in candidates:
        if child in mapping:
            return child
    return None


def _leg_length(rest: np.ndarray, mapping: dict[int, int]) -> float:
    total = 0.0
    for a, b in (("left_hip", "left_knee"), ("left_knee", "left_ankle")):
        if JOINT_INDEX[a] in mapping and JOINT_INDEX[b] in mapping:
            total += float(np.linalg.norm(rest[mapping[JOINT_INDEX[b]]] - rest[mapping[JOINT_INDEX[a]]]))
    return total


def _resample(local: np.ndarray, root_position: np.ndarray, frame_time: float, fps: float):
    """Local rotations and root positions at `fps` (quaternion nlerp between file frames)."""
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"fps={fps}: the frame rate must be positive")
    F = local.shape[0]
    duration = (F - 1) * frame_time
    count = int(np.floor(duration * fps + 1e-6)) + 1
    source = np.arange(count) / fps / frame_time  # fractional source frame
    i0 = np.clip(np.floor(source).astype(int), 0, F - 1)
    i1 = np.clip(i0 + 1, 0, F - 1)
    w = (source - i0)[:, None]
    q = roma.rotmat_to_unitquat(torch.as_tensor(local)).numpy()  # (F, J, 4)
    q0, q1 = q[i0], q[i1]
    q1 = np.where((q0 * q1).sum(-1, keepdims=True) < 0, -q1, q1)
    qi = (1 - w[..., None]) * q0 + w[..., None] * q1
    qi /= np.linalg.norm(qi, axis=-1, keepdims=True)
    rot = roma.unitquat_to_rotmat(torch.as_tensor(qi)).numpy()
    pos = (1 - w) * root_position[i0] + w * root_position[i1]
    return rot, pos
