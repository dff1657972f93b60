"""The SMPL-H kinematic tree: the 52 joint names in SMPL-H order, their parents, and the
rest joint positions of the project's procedural body.

Rest positions are in SMPL's canonical frame (metres, Y up, the body facing +Z, +X on the
body's left, T-pose with palms down), pelvis at the origin; the character frame (Z up,
facing -Y) is reached through `CANONICAL_TO_CHARACTER`.
"""

from __future__ import annotations

import numpy as np

SMPLH_BODY_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
# MANO order inside each hand: index, middle, pinky, ring, thumb (three joints each).
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
SMPLH_HAND_JOINT_NAMES = tuple(
    f"{side}_{finger}{k}" for side in ("left", "right") for finger in FINGERS for k in (1, 2, 3)
)
SMPLH_JOINT_NAMES = SMPLH_BODY_JOINT_NAMES + SMPLH_HAND_JOINT_NAMES
NUM_JOINTS = len(SMPLH_JOINT_NAMES)  # 52
JOINT_INDEX = {name: i for i, name in enumerate(SMPLH_JOINT_NAMES)}

_BODY_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)


def _hand_parents(wrist: int, first: int) -> tuple[int, ...]:
    parents = []
    for f in range(len(FINGERS)):
        base = first + 3 * f
        parents += [wrist, base, base + 1]
    return tuple(parents)


SMPLH_PARENTS = np.array(_BODY_PARENTS + _hand_parents(20, 22) + _hand_parents(21, 37), dtype=np.int64)

# Rotation taking SMPL canonical coordinates (Y up, facing +Z) to the character frame
# (Z up, facing -Y): +90 degrees about X. Composed into every global_orient.
CANONICAL_TO_CHARACTER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

# Height of the floor below the pelvis in the canonical rest pose of the procedural body.
REST_FLOOR_Y = -0.95

# Left-side rest positions (canonical frame); the right side mirrors x.
_LEFT_BODY = {
    "left_hip": (0.088, -0.085, 0.0),
    "left_knee": (0.105, -0.500, 0.012),
    "left_ankle": (0.112, -0.870, -0.035),
    "left_foot": (0.120, -0.925, 0.095),
    "left_collar": (0.075, 0.405, -0.01),
    "left_shoulder": (0.180, 0.415, -0.015),
    "left_elbow": (0.440, 0.410, -0.025),
    "left_wrist": (0.690, 0.410, -0.015),
}
_CENTRE_BODY = {
    "pelvis": (0.0, 0.0, 0.0),
    "spine1": (0.0, 0.110, -0.010),
    "spine2": (0.0, 0.240, 0.0),
    "spine3": (0.0, 0.300, 0.010),
    "neck": (0.0, 0.500, -0.010),
    "head": (0.0, 0.590, 0.020),
}
# Finger chains of the left hand: joint 1, 2, 3 and the fingertip (T-pose, arm along +X,
# palm facing down, thumb pointing forward).
_LEFT_FINGERS = {
    "index": ((0.782, 0.405, 0.030), (0.820, 0.405, 0.032), (0.845, 0.404, 0.033), (0.867, 0.402, 0.034)),
    "middle": ((0.786, 0.406, 0.008), (0.829, 0.406, 0.008), (0.857, 0.405, 0.008), (0.881, 0.403, 0.008)),
    "pinky": ((0.772, 0.403, -0.034), (0.801, 0.403, -0.037), (0.821, 0.402, -0.039), (0.839, 0.400, -0.040)),
    "ring": ((0.781, 0.405, -0.013), (0.820, 0.405, -0.014), (0.846, 0.404, -0.015), (0.868, 0.402, -0.016)),
    "thumb": ((0.720, 0.392, 0.030), (0.748, 0.388, 0.055), (0.772, 0.388, 0.070), (0.795, 0.388, 0.080)),
}


def _mirror(p) -> tuple[float, float, float]:
    return (-p[0], p[1], p[2])


def rest_joint_positions() -> np.ndarray:
    """Rest joints of the procedural body, (52, 3) canonical frame, pelvis at the origin."""
    joints = np.zeros((NUM_JOINTS, 3))
    for name, p in _CENTRE_BODY.items():
        joints[JOINT_INDEX[name]] = p
    for name, p in _LEFT_BODY.items():
        joints[JOINT_INDEX[name]] = p
        joints[JOINT_INDEX["right" + name[4:]]] = _mirror(p)
    for finger, chain in _LEFT_FINGERS.items():
        for k in range(3):
            joints[JOINT_INDEX[f"left_{finger}{k + 1}"]] = chain[k]
            joints[JOINT_INDEX[f"right_{finger}{k + 1}"]] = _mirror(chain[k])
    return joints


def rest_fingertips() -> dict[str, np.ndarray]:
    """Fingertip positions (end of the third phalanx) keyed like `left_index`, canonical frame."""
    tips = {}
    for finger, chain in _LEFT_FINGERS.items():
        tips[f"left_{finger}"] = np.array(chain[3])
        tips[f"right_{finger}"] = np.array(_mirror(chain[3]))
    return tips


def children(joint: int) -> list[int]:
    return [int(j) for j in np.flatnonzero(SMPLH_PARENTS == joint)]


def descendants(joint: int) -> list[int]:
    """The joint itself and every joint below it in the tree."""
    out, stack = [], [joint]
    while stack:
        j = stack.pop()
        out.append(j)
        stack.extend(children(j))
    return sorted(out)
