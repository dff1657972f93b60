"""Procedural motion library: parametric, randomised SMPL-H pose sequences in the character frame.

A family is a function of (random generator, time) that fills joint-angle channels (gait
phase, arm directions, elbow and knee flexion, finger curls...); `_assemble` clamps them to
joint limits, turns them into SMPL-H axis-angles (roma), and places the root so the feet
touch the ground and the pelvis starts above the origin facing -Y (kinematics.py). The fixed
train/test split of families and seeds is train_test_split.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import roma
import torch

from dimo_engine.body.kinematics import ground_translation
from dimo_engine.body.motion_sequence import MotionSequence
from dimo_engine.body.skeleton import CANONICAL_TO_CHARACTER, FINGERS, JOINT_INDEX
from dimo_engine.errors import InputError

__all__ = ["MOTION_FAMILIES", "JOINT_ANGLE_LIMITS", "generate_motion"]

J = JOINT_INDEX
SIDES = ("left", "right")
# Relaxed arm: hanging down, slightly away from the hips.
_ARM_DOWN = (0.14, 0.0)  # (elevation from straight down, azimuth: 0 sideways, pi/2 forwards)


# ----------------------------------------------------------------------------- channels
@dataclass
class _Leg:
    hip_flex: np.ndarray  # thigh forwards (+), backwards (-)
    hip_abd: np.ndarray  # thigh outwards
    hip_rot: np.ndarray  # about the thigh
    knee: np.ndarray  # flexion
    ankle: np.ndarray  # dorsiflexion (toes up, +)
    toes: np.ndarray


@dataclass
class _Arm:
    elevation: np.ndarray  # upper arm: 0 hanging down, pi/2 horizontal, pi straight up
    azimuth: np.ndarray  # 0 sideways, pi/2 forwards, negative backwards
    twist: np.ndarray  # about the upper arm
    elbow: np.ndarray  # flexion
    wrist: np.ndarray  # flexion towards the palm
    shrug: np.ndarray  # collar raise


@dataclass
class _Hand:
    curl: np.ndarray  # (F, 5) per finger in MANO order (index, middle, pinky, ring, thumb), 0 open .. 1 closed
    spread: np.ndarray  # (F,)


@dataclass
class _Channels:
    num_frames: int
    heading: np.ndarray = None  # yaw about Z (character frame), 0 = facing -Y, + turns left
    travel: np.ndarray = None  # (F, 2) pelvis ground position, character frame
    lift: np.ndarray = None  # extra pelvis height above ground contact (jumps, flight)
    pelvis_pitch: np.ndarray = None  # forwards tilt of the whole body
    pelvis_roll: np.ndarray = None
    pelvis_yaw: np.ndarray = None
    spine_flex: np.ndarray = None
    spine_lat: np.ndarray = None  # bend to the left (+)
    spine_twist: np.ndarray = None  # turn the chest to the left (+)
    neck_pitch: np.ndarray = None  # look down (+)
    neck_yaw: np.ndarray = None  # look left (+)
    legs: dict = field(default_factory=dict)
    arms: dict = field(default_factory=dict)
    hands: dict = field(default_factory=dict)

    def __post_init__(self):
        F = self.num_frames
        zero = lambda: np.zeros(F)  # noqa: E731
        for name in ("heading", "lift", "pelvis_pitch", "pelvis_roll", "pelvis_yaw", "spine_flex",
                     "spine_lat", "spine_twist", "neck_pitch", "neck_yaw"):
            setattr(self, name, zero())
        self.travel = np.zeros((F, 2))
        for side in SIDES:
            self.legs[side] = _Leg(zero(), zero() + 0.03, zero(), zero() + 0.05, zero(), zero())
            self.arms[side] = _Arm(zero() + _ARM_DOWN[0], zero() + _ARM_DOWN[1], zero(), zero() + 0.15, zero(), zero())
            self.hands[side] = _Hand(np.full((F, 5), 0.2), zero())


# Joint limits (radians) applied to the channels; the sampled axis-angles respect them.
_CHANNEL_LIMITS = {
    "hip_flex": (-0.5, 2.0), "hip_abd": (-0.3, 0.8), "hip_rot": (-0.5, 0.5), "knee": (0.0, 2.4),
    "ankle": (-0.7, 0.5), "toes": (-0.2, 0.6),
    "elevation": (0.05, 2.9), "azimuth": (-1.6, 1.75), "twist": (-1.2, 1.2), "elbow": (0.0, 2.5),
    "wrist": (-0.8, 0.8), "shrug": (0.0, 0.3),
    "spine_flex": (-0.35, 1.3), "spine_lat": (-0.5, 0.5), "spine_twist": (-0.8, 0.8),
    "neck_pitch": (-0.6, 0.7), "neck_yaw": (-1.0, 1.0), "pelvis_pitch": (-0.3, 0.7), "pelvis_roll": (-0.3, 0.3),
    "pelvis_yaw": (-0.6, 0.6),
}
# Largest rotation angle (radians) of each body joint's local axis-angle; tests check motions against it.
JOINT_ANGLE_LIMITS = {
    "left_hip": 2.1, "right_hip": 2.1, "left_knee": 2.4, "right_knee": 2.4, "left_ankle": 0.75, "right_ankle": 0.75,
    "left_foot": 0.6, "right_foot": 0.6, "spine1": 0.6, "spine2": 0.6, "spine3": 0.6, "neck": 0.5, "head": 0.5,
    "left_collar": 0.35, "right_collar": 0.35, "left_shoulder": 3.0, "right_shoulder": 3.0,
    "left_elbow": 2.5, "right_elbow": 2.5, "left_wrist": 0.85, "right_wrist": 0.85,
}


def _clip_limits(ch: _Channels) -> None:
    def clip(obj, name, key=None):
        lo, hi = _CHANNEL_LIMITS[key or name]
        setattr(obj, name, np.clip(getattr(obj, name), lo, hi))

    for name in ("spine_flex", "spine_lat", "spine_twist", "neck_pitch", "neck_yaw", "pelvis_pitch", "pelvis_roll", "pelvis_yaw"):
        clip(ch, name)
    for side in SIDES:
        for name in ("hip_flex", "hip_abd", "hip_rot", "knee", "ankle", "toes"):
            clip(ch.legs[side], name)
        for name in ("elevation", "azimuth", "twist", "elbow", "wrist", "shrug"):
            clip(ch.arms[side], name)
        ch.hands[side].curl = np.clip(ch.hands[side].curl, 0.0, 1.0)
        ch.hands[side].spread = np.clip(ch.hands[side].spread, -0.3, 1.0)


# ----------------------------------------------------------------------------- curves
def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _pulse(t, start, rise, hold, fall):
    """0 -> 1 -> 0 with smooth ramps: rising at `start` over `rise`, held, falling over `fall`."""
    return _smoothstep((t - start) / max(rise, 1e-6)) * (1.0 - _smoothstep((t - start - rise - hold) / max(fall, 1e-6)))


def _blend(a, b, w):
    w = np.asarray(w)
    if np.ndim(a) > np.ndim(w):
        w = w[:, None]
    return a * (1.0 - w) + b * w


def _event(rng, duration, typical):
    """Start and length (seconds) of a one-shot action of about `typical` seconds in a clip of
    `duration` seconds. Actions keep their natural speed: a short clip shows part of one."""
    length = typical * rng.uniform(0.8, 1.25)
    slack = duration - length
    start = rng.uniform(min(slack, 0.0), max(slack, 0.0))
    return start, length


def _raise(rng, t, ramp=0.5):
    """0 -> 1 over `ramp` seconds, already partly raised at the first frame in some clips."""
    return _smoothstep((t + rng.uniform(0.0, 0.5 * ramp)) / ramp)


# ----------------------------------------------------------------------------- hands
HAND_SHAPES = {
    "relaxed": ((0.25, 0.3, 0.35, 0.32, 0.15), 0.1),
    "open": ((0.0, 0.0, 0.0, 0.0, 0.0), 0.6),
    "fist": ((1.0, 1.0, 1.0, 1.0, 0.8), 0.0),
    "point": ((0.0, 1.0, 1.0, 1.0, 0.7), 0.0),
    "thumbs_up": ((1.0, 1.0, 1.0, 1.0, 0.0), 0.0),
    "pinch": ((0.55, 0.15, 0.1, 0.12, 0.55), 0.2),
    "count1": ((0.0, 1.0, 1.0, 1.0, 0.8), 0.0),
    "count2": ((0.0, 0.0, 1.0, 1.0, 0.8), 0.4),
    "count3": ((0.0, 0.0, 1.0, 0.0, 0.8), 0.4),
    "count4": ((0.0, 0.0, 0.0, 0.0, 0.8), 0.5),
    "count5": ((0.0, 0.0, 0.0, 0.0, 0.0), 0.6),
}


def _hand_shape(name, frames):
    curl, spread = HAND_SHAPES[name]
    return np.tile(np.array(curl, float), (frames, 1)), np.full(frames, spread)


def _hand_sequence(t, shapes, times, transition=0.2):
    """Hand shapes switching smoothly at the given times: shapes[i] from times[i] on."""
    curl, spread = _hand_shape(shapes[0], len(t))
    for name, at in zip(shapes[1:], times[1:]):
        w = _smoothstep((t - at) / transition)
        c, s = _hand_shape(name, len(t))
        curl, spread = _blend(curl, c, w), _blend(spread, s, w)
    return curl, spread


def _set_hand(ch, side, curl_spread):
    ch.hands[side].curl, ch.hands[side].spread = curl_spread


def _random_gestures(rng, t, duration, choices=("relaxed", "open", "fist", "point", "thumbs_up", "pinch", "count2", "count3")):
    count = int(rng.integers(1, 4))
    shapes = [str(rng.choice(choices)) for _ in range(count)]
    times = [0.0] + sorted(rng.uniform(0.1, 0.9, count - 1) * duration)
    return _hand_sequence(t, shapes, times, transition=0.25)


# ----------------------------------------------------------------------------- families
def _swing_arm(arm: _Arm, swing, abduction) -> None:
    """Arm direction from a forwards swing (radians, + forwards) and a sideways abduction."""
    d = np.stack([np.full_like(swing, np.sin(abduction)), -np.cos(abduction) * np.cos(swing), np.cos(abduction) * np.sin(swing)], axis=1)
    arm.elevation = np.arccos(np.clip(-d[:, 1], -1.0, 1.0))
    arm.azimuth = np.arctan2(d[:, 2], d[:, 0])


def _gait(ch, t, rng, speed, cadence, hip_amp, knee_amp, arm_amp, direction=0.0, lean=0.0, flight=0.0):
    """Alternating legs at `cadence` steps/s, root travelling at `speed` m/s along `direction`
    (radians from facing; pi walks backwards), arms swinging against the legs."""
    phase = np.pi * cadence * t + rng.uniform(0, 2 * np.pi)
    sign = -1.0 if abs(np.cos(direction)) > 0.5 and np.cos(direction) < 0 else 1.0
    for side, offset in (("left", 0.0), ("right", np.pi)):
        p = phase + offset
        leg = ch.legs[side]
        leg.hip_flex = 0.1 * flight + sign * hip_amp * np.sin(p)
        leg.knee = 0.12 + 0.5 * flight + knee_amp * np.maximum(0.0, np.sin(p + sign * 1.0)) ** 1.5
        leg.ankle = 0.12 * np.sin(p - 0.8)
        swing = -sign * arm_amp * np.sin(p)  # arms swing against the legs
        _swing_arm(ch.arms[side], swing + 0.25 * flight, _ARM_DOWN[0] + 0.05)
        ch.arms[side].elbow = 0.25 + 1.1 * flight + 0.3 * np.maximum(0.0, swing)
    ch.lift = flight * 0.06 * np.maximum(0.0, np.sin(2 * phase)) ** 2
    ch.spine_flex = ch.spine_flex + lean + 0.03 * np.sin(2 * phase)
    ch.spine_twist = ch.spine_twist + 0.08 * np.sin(phase) * (1 + flight)
    ch.pelvis_yaw = -0.06 * np.sin(phase)
    heading = ch.heading
    step = np.gradient(t) if len(t) > 1 else np.zeros_like(t)
    velocity_angle = heading + direction
    forward = np.stack([np.sin(velocity_angle), -np.cos(velocity_angle)], axis=1)
    ch.travel = np.cumsum(forward * (speed * step)[:, None], axis=0)
    ch.travel -= ch.travel[0]


def _walk(ch, t, rng, duration):
    speed = rng.uniform(0.9, 1.5)
    cadence = speed / rng.uniform(0.6, 0.75)  # steps per second from step length
    turn = rng.uniform(-0.4, 0.4) * (rng.random() < 0.5)
    ch.heading = turn * t / max(duration, 1e-3)
    _gait(ch, t, rng, speed, cadence, hip_amp=rng.uniform(0.3, 0.45), knee_amp=rng.uniform(0.6, 0.9), arm_amp=rng.uniform(0.2, 0.4))
    ch.neck_yaw = rng.uniform(-0.3, 0.3) * np.sin(0.7 * t)
    _set_hand(ch, "left", _hand_shape("relaxed", len(t)))
    _set_hand(ch, "right", _hand_shape("relaxed", len(t)))


def _walk_backward(ch, t, rng, duration):
    speed = rng.uniform(0.5, 0.9)
    _gait(ch, t, rng, speed, speed / 0.5, hip_amp=0.3, knee_amp=0.5, arm_amp=0.15, direction=np.pi)
    ch.spine_flex = ch.spine_flex - 0.05


def _run(ch, t, rng, duration):
    speed = rng.uniform(2.2, 3.5)
    cadence = speed / rng.uniform(1.0, 1.3)
    ch.heading = rng.uniform(-0.3, 0.3) * t / max(duration, 1e-3)
    _gait(ch, t, rng, speed, cadence, hip_amp=rng.uniform(0.55, 0.75), knee_amp=rng.uniform(1.2, 1.6), arm_amp=0.45,
          lean=rng.uniform(0.1, 0.2), flight=1.0)
    for side in SIDES:
        _set_hand(ch, side, _hand_shape("fist" if rng.random() < 0.5 else "relaxed", len(t)))


def _side_step(ch, t, rng, duration):
    direction = np.pi / 2 * rng.choice([-1.0, 1.0])
    speed = rng.uniform(0.4, 0.7)
    cadence = rng.uniform(1.2, 1.8)
    phase = 2 * np.pi * cadence * t
    lead = "left" if direction > 0 else "right"
    for side in SIDES:
        offset = 0.0 if side == lead else np.pi
        ch.legs[side].hip_abd = 0.05 + 0.18 * np.maximum(0, np.sin(phase + offset))
        ch.legs[side].knee = 0.15 + 0.3 * np.maximum(0, np.sin(phase + offset))
    ch.pelvis_roll = 0.04 * np.sin(phase)
    velocity_angle = ch.heading + direction
    step = np.gradient(t) if len(t) > 1 else np.zeros_like(t)
    ch.travel = np.cumsum(np.stack([np.sin(velocity_angle), -np.cos(velocity_angle)], 1) * (speed * step)[:, None], axis=0)
    ch.travel -= ch.travel[0]


def _turn(ch, t, rng, duration):
    start, length = _event(rng, duration, rng.uniform(1.0, 2.0))
    angle = rng.choice([-1.0, 1.0]) * rng.uniform(np.pi / 2, np.pi)
    progress = _smoothstep((t - start) / length)
    ch.heading = angle * progress
    stepping = _pulse(t, start, 0.1 * length, 0.8 * length, 0.1 * length)
    phase = 2 * np.pi * 1.6 * t
    for side, offset in (("left", 0.0), ("right", np.pi)):
        ch.legs[side].hip_flex = 0.25 * stepping * np.maximum(0, np.sin(phase + offset))
        ch.legs[side].knee = 0.1 + 0.5 * stepping * np.maximum(0, np.sin(phase + offset))
    ch.neck_yaw = 0.3 * np.sign(angle) * stepping
    ch.spine_twist = 0.15 * np.sign(angle) * stepping


def _jump(ch, t, rng, duration):
    start, length = _event(rng, duration, rng.uniform(1.4, 2.0))
    crouch = _pulse(t, start, 0.3 * length, 0.05 * length, 0.15 * length)
    airborne = _pulse(t, start + 0.4 * length, 0.1 * length, 0.15 * length, 0.1 * length)
    arms_up = _pulse(t, start + 0.2 * length, 0.25 * length, 0.15 * length, 0.3 * length)
    land = _pulse(t, start + 0.75 * length, 0.08 * length, 0.02 * length, 0.15 * length)
    height = rng.uniform(0.15, 0.4)
    bend = crouch + 0.7 * land
    for side in SIDES:
        ch.legs[side].hip_flex = 0.9 * bend + 0.2 * airborne
        ch.legs[side].knee = 0.05 + 1.5 * bend + 0.3 * airborne
        ch.legs[side].ankle = 0.35 * bend - 0.4 * airborne
        ch.arms[side].elevation = _ARM_DOWN[0] + 0.3 * crouch * (1 - arms_up) + rng.uniform(1.6, 2.6) * arms_up
        ch.arms[side].azimuth = 0.2 - 0.6 * crouch * (1 - arms_up) + 1.1 * arms_up
        ch.arms[side].elbow = 0.2 + 0.3 * arms_up
    ch.spine_flex = 0.5 * bend
    ch.lift = height * np.sin(np.pi * np.clip((t - start - 0.45 * length) / (0.25 * length), 0, 1))
    forward = rng.uniform(0.0, 0.6)
    hop = _smoothstep((t - start - 0.45 * length) / (0.25 * length))
    ch.travel = np.stack([np.zeros_like(t), -forward * hop], axis=1)


def _jumping_jacks(ch, t, rng, duration):
    rate = rng.uniform(0.8, 1.4)
    open_ = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t)
    for side in SIDES:
        ch.legs[side].hip_abd = 0.03 + 0.3 * open_
        ch.legs[side].knee = 0.1 + 0.2 * np.abs(np.sin(2 * np.pi * rate * t))
        ch.arms[side].elevation = _ARM_DOWN[0] + rng.uniform(2.4, 2.7) * open_
        ch.arms[side].azimuth = 0.05 + 0.0 * t
        ch.arms[side].elbow = 0.1 + 0.1 * open_
        _set_hand(ch, side, _hand_shape("open", len(t)))
    ch.lift = 0.06 * np.maximum(0.0, np.sin(4 * np.pi * rate * t)) ** 2  # a hop on each open and close


def _squat(ch, t, rng, duration):
    rate = rng.uniform(0.3, 0.6)
    depth = rng.uniform(0.6, 1.0) * (0.5 - 0.5 * np.cos(2 * np.pi * rate * t))
    for side in SIDES:
        ch.legs[side].hip_flex = 1.5 * depth
        ch.legs[side].knee = 0.05 + 1.9 * depth
        ch.legs[side].ankle = 0.45 * depth
        ch.legs[side].hip_abd = 0.1 + 0.1 * depth
        ch.arms[side].elevation = _ARM_DOWN[0] + 1.4 * depth
        ch.arms[side].azimuth = 0.1 + 1.4 * _smoothstep(depth * 3)
    ch.spine_flex = 0.5 * depth


def _sit_down(ch, t, rng, duration):
    start, length = _event(rng, duration, rng.uniform(1.5, 2.5))
    down = _smoothstep((t - start) / length)
    for side in SIDES:
        ch.legs[side].hip_flex = 1.45 * down
        ch.legs[side].knee = 0.05 + 1.55 * down
        ch.legs[side].ankle = 0.3 * down
        ch.legs[side].hip_abd = 0.05 + 0.12 * down
        ch.arms[side].elevation = _ARM_DOWN[0] + 0.9 * _pulse(t, start, 0.4 * length, 0.2 * length, 0.4 * length)
        ch.arms[side].azimuth = 0.1 + 1.3 * _pulse(t, start, 0.4 * length, 0.2 * length, 0.4 * length)
        ch.arms[side].elbow = 0.2 + 0.6 * down
    ch.spine_flex = 0.55 * _pulse(t, start, 0.5 * length, 0.1 * length, 0.4 * length) + 0.1 * down
    # The pelvis moves back over the (imagined) seat while lowering.
    ch.travel = np.stack([np.zeros_like(t), 0.2 * down], axis=1)


def _bend(ch, t, rng, duration):
    start, length = _event(rng, duration, rng.uniform(2.0, 3.0))
    bend = _pulse(t, start, 0.4 * length, 0.2 * length, 0.4 * length) * rng.uniform(0.7, 1.0)
    ch.spine_flex = 1.0 * bend
    ch.pelvis_pitch = 0.55 * bend
    for side in SIDES:
        ch.legs[side].hip_flex = 0.15 * bend
        ch.legs[side].knee = 0.05 + 0.25 * bend
        ch.arms[side].elevation = _ARM_DOWN[0] + 1.2 * bend
        ch.arms[side].azimuth = 0.2 + 1.3 * _smoothstep(bend * 2)
    ch.neck_pitch = -0.3 * bend


def _idle(ch, t, rng, duration):
    breathe = np.sin(2 * np.pi * rng.uniform(0.2, 0.3) * t)
    sway = np.sin(2 * np.pi * rng.uniform(0.1, 0.2) * t + rng.uniform(0, 6))
    ch.spine_flex = 0.02 * breathe
    ch.pelvis_roll = 0.03 * sway
    ch.spine_lat = -0.04 * sway
    ch.neck_yaw = rng.uniform(0.2, 0.5) * np.sin(2 * np.pi * 0.15 * t + rng.uniform(0, 6))
    for side in SIDES:
        ch.arms[side].elevation = ch.arms[side].elevation + 0.03 * breathe
        ch.legs[side].knee = 0.05 + 0.05 * (sway if side == "left" else -sway).clip(0)


def _one_arm(rng):
    return ("right", "left") if rng.random() < 0.7 else ("left", "right")


def _wave(ch, t, rng, duration):
    side, _ = _one_arm(rng)
    start, length = _event(rng, duration, rng.uniform(2.0, 3.5))
    up = _pulse(t, start, 0.2 * length, 0.6 * length, 0.2 * length)
    rate = rng.uniform(1.5, 2.5)
    arm = ch.arms[side]
    arm.elevation = _ARM_DOWN[0] + rng.uniform(1.9, 2.4) * up
    arm.azimuth = 0.2 + 0.3 * up
    arm.twist = -0.9 * up
    arm.elbow = 0.15 + (0.7 + 0.35 * np.sin(2 * np.pi * rate * t)) * up
    _set_hand(ch, side, _hand_sequence(t, ["relaxed", "open", "relaxed"], [0, start, start + 0.85 * length], 0.2))
    ch.neck_yaw = (0.2 if side == "left" else -0.2) * up


def _point(ch, t, rng, duration):
    side, _ = _one_arm(rng)
    start, length = _event(rng, duration, rng.uniform(1.5, 3.0))
    up = _pulse(t, start, 0.25 * length, 0.5 * length, 0.25 * length)
    arm = ch.arms[side]
    arm.elevation = _ARM_DOWN[0] + rng.uniform(1.2, 1.9) * up
    arm.azimuth = 0.1 + rng.uniform(0.2, 1.5) * up
    arm.elbow = 0.15 + 0.05 * up
    _set_hand(ch, side, _hand_sequence(t, ["relaxed", "point", "relaxed"], [0, start + 0.1 * length, start + 0.8 * length], 0.2))
    ch.neck_yaw = (0.3 if side == "left" else -0.3) * (arm.azimuth - 0.1) * up
    ch.spine_twist = (0.1 if side == "left" else -0.1) * up


def _clap(ch, t, rng, duration):
    start, length = _event(rng, duration, rng.uniform(2.0, 3.5))
    up = _pulse(t, start, 0.2 * length, 0.6 * length, 0.2 * length)
    rate = rng.uniform(1.5, 3.0)
    together = 0.5 + 0.5 * np.cos(2 * np.pi * rate * (t - start))
    for side in SIDES:
        arm = ch.arms[side]
        # Tuned so the palms meet 0.35 m in front of the chest when `together` is 1.
        arm.elevation = _ARM_DOWN[0] + 0.46 * up
        arm.azimuth = 0.1 + (0.9 + 0.4 * together) * up
        arm.twist = 0.6 * up
        arm.elbow = 0.15 + 1.25 * up
        _set_hand(ch, side, _hand_sequence(t, ["relaxed", "open", "relaxed"], [0, start, start + 0.85 * length], 0.2))


def _arm_circles(ch, t, rng, duration):
    rate = rng.uniform(0.5, 1.2) * rng.choice([-1.0, 1.0])
    radius = rng.uniform(0.2, 0.45)
    phase = 2 * np.pi * rate * t
    start = _smoothstep(t / 0.4)
    for side in SIDES:
        arm = ch.arms[side]
        arm.elevation = _ARM_DOWN[0] + (np.pi / 2 - _ARM_DOWN[0] + radius * np.sin(phase)) * start
        arm.azimuth = (0.15 + radius * np.cos(phase)) * start
        arm.elbow = 0.1 + 0.0 * t
        _set_hand(ch, side, _hand_shape("open" if rng.random() < 0.5 else "fist", len(t)))


def _stretch(ch, t, rng, duration):
    start, length = _event(rng, duration, rng.uniform(2.0, 3.0))
    up = _pulse(t, start, 0.35 * length, 0.3 * length, 0.35 * length)
    lean = rng.uniform(-0.3, 0.3)
    for side in SIDES:
        ch.arms[side].elevation = _ARM_DOWN[0] + 2.7 * up
        ch.arms[side].azimuth = 0.3 + 0.9 * up
        ch.arms[side].elbow = 0.15 + 0.2 * up
        _set_hand(ch, side, _hand_shape("open", len(t)))
    ch.spine_flex = -0.15 * up
    ch.spine_lat = lean * up
    ch.neck_pitch = -0.3 * up
    for side in SIDES:
        ch.legs[side].ankle = -0.2 * up


def _reach(ch, t, rng, duration):
    side, _ = _one_arm(rng)
    start, length = _event(rng, duration, rng.uniform(1.5, 2.5))
    out = _pulse(t, start, 0.35 * length, 0.3 * length, 0.35 * length)
    height = rng.uniform(-0.5, 1.0)  # low (bend) .. high (up on toes)
    arm = ch.arms[side]
    arm.elevation = _ARM_DOWN[0] + (1.4 + 0.6 * height) * out
    arm.azimuth = 0.1 + rng.uniform(0.3, 1.3) * out
    arm.elbow = 0.15 + 0.05 * out
    ch.spine_flex = 0.4 * max(0.0, -height) * out + 0.1 * out
    ch.spine_lat = (0.15 if side == "left" else -0.15) * out
    ch.spine_twist = (0.2 if side == "left" else -0.2) * out
    for leg in SIDES:
        ch.legs[leg].ankle = -0.3 * max(0.0, height) * out
        ch.legs[leg].knee = 0.05 + 0.4 * max(0.0, -height) * out
        ch.legs[leg].hip_flex = 0.3 * max(0.0, -height) * out
    _set_hand(ch, side, _hand_sequence(t, ["relaxed", "open", "pinch", "relaxed"], [0, start, start + 0.5 * length, start + 0.8 * length], 0.15))


def _kick(ch, t, rng, duration):
    side, other = _one_arm(rng)
    start, length = _event(rng, duration, rng.uniform(0.9, 1.5))
    chamber = _pulse(t, start, 0.3 * length, 0.05 * length, 0.35 * length)
    extend = _pulse(t, start + 0.25 * length, 0.15 * length, 0.1 * length, 0.2 * length)
    leg = ch.legs[side]
    leg.hip_flex = (1.0 + rng.uniform(0.0, 0.6)) * np.maximum(chamber, extend)
    leg.knee = 0.05 + 1.6 * chamber * (1 - extend)
    leg.ankle = -0.4 * extend
    ch.legs[other].knee = 0.05 + 0.25 * np.maximum(chamber, extend)
    ch.legs[other].hip_flex = 0.15 * np.maximum(chamber, extend)
    ch.spine_flex = -0.15 * extend
    for arm_side in SIDES:
        ch.arms[arm_side].elevation = _ARM_DOWN[0] + 0.9 * np.maximum(chamber, extend)
        ch.arms[arm_side].azimuth = 0.3 + 0.5 * np.maximum(chamber, extend)
        ch.arms[arm_side].elbow = 0.2 + 1.0 * np.maximum(chamber, extend)
        _set_hand(ch, arm_side, _hand_shape("fist", len(t)))


def _punch(ch, t, rng, duration):
    rate = rng.uniform(0.8, 1.6)
    guard = _smoothstep(t / 0.3)
    for side, offset in (("left", 0.0), ("right", 0.5)):
        strike = np.maximum(0, np.sin(2 * np.pi * rate * t + np.pi * 2 * offset)) ** 3
        arm = ch.arms[side]
        arm.elevation = _ARM_DOWN[0] + (0.9 + 0.55 * strike) * guard
        arm.azimuth = 0.1 + (1.25 + 0.2 * strike) * guard
        arm.elbow = 0.2 + (1.9 - 1.75 * strike) * guard
        arm.twist = 0.4 * guard
        _set_hand(ch, side, _hand_shape("fist", len(t)))
        ch.spine_twist = ch.spine_twist + (-0.25 if side == "left" else 0.25) * strike * guard
    for side in SIDES:
        ch.legs[side].knee = 0.25 + 0.0 * t
        ch.legs[side].hip_flex = 0.15 + 0.0 * t
        ch.legs[side].hip_abd = 0.1 + 0.0 * t
    ch.neck_pitch = 0.1 * guard


def _dance_sway(ch, t, rng, duration):
    beat = rng.uniform(0.8, 1.2)
    phase = 2 * np.pi * beat * t / 2
    ch.pelvis_roll = 0.08 * np.sin(phase)
    ch.spine_lat = -0.15 * np.sin(phase)
    for side, s in (("left", 1.0), ("right", -1.0)):
        ch.legs[side].knee = 0.15 + 0.2 * np.maximum(0, s * np.sin(phase))
        ch.arms[side].elevation = 0.7 + 0.6 * np.sin(phase + s * 0.5)
        ch.arms[side].azimuth = 0.6 + 0.4 * np.cos(phase)
        ch.arms[side].elbow = 0.8 + 0.5 * np.sin(phase * 2)
    ch.neck_yaw = 0.2 * np.sin(phase)


def _dance_bounce(ch, t, rng, duration):
    beat = rng.uniform(1.6, 2.2)
    bounce = 0.5 - 0.5 * np.cos(2 * np.pi * beat * t)
    alternate = np.sin(np.pi * beat * t)
    for side, s in (("left", 1.0), ("right", -1.0)):
        ch.legs[side].knee = 0.1 + 0.45 * bounce
        ch.legs[side].hip_flex = 0.25 * bounce
        ch.legs[side].ankle = 0.2 * bounce
        ch.arms[side].elevation = 1.2 + 0.8 * np.maximum(0, s * alternate)
        ch.arms[side].azimuth = 1.0 + 0.0 * t
        ch.arms[side].elbow = 1.3 - 0.8 * np.maximum(0, s * alternate)
        _set_hand(ch, side, _hand_shape("fist", len(t)))
    ch.spine_flex = 0.1 * bounce
    ch.neck_pitch = 0.15 * bounce


def _dance_twist(ch, t, rng, duration):
    beat = rng.uniform(1.0, 1.6)
    phase = 2 * np.pi * beat * t
    ch.pelvis_yaw = 0.35 * np.sin(phase)
    ch.spine_twist = -0.5 * np.sin(phase)
    for side, s in (("left", 1.0), ("right", -1.0)):
        ch.legs[side].knee = 0.3 + 0.0 * t
        ch.legs[side].hip_flex = 0.2 + 0.0 * t
        ch.legs[side].hip_rot = 0.25 * np.sin(phase) * s
        ch.arms[side].elevation = 1.3 + 0.1 * np.sin(phase)
        ch.arms[side].azimuth = 0.5 + 0.2 * np.sin(phase) * s
        ch.arms[side].elbow = 1.4 + 0.0 * t
    ch.neck_yaw = 0.2 * np.sin(phase)


def _hands_in_front(ch, t, side, up):
    arm = ch.arms[side]
    arm.elevation = _ARM_DOWN[0] + 0.75 * up
    arm.azimuth = 0.2 + 1.1 * up
    arm.elbow = 0.15 + 1.2 * up
    arm.twist = -0.6 * up


def _cycle_hand(ch, side, t, rate, first, second):
    """The hand goes smoothly from shape `first` to `second` and back, `rate` times a second."""
    w = 0.5 - 0.5 * np.cos(2 * np.pi * rate * t)
    (a, a_spread), (b, b_spread) = _hand_shape(first, len(t)), _hand_shape(second, len(t))
    ch.hands[side].curl, ch.hands[side].spread = _blend(a, b, w), _blend(a_spread, b_spread, w)


def _fist_open(ch, t, rng, duration):
    side, other = _one_arm(rng)
    up = _raise(rng, t)
    _hands_in_front(ch, t, side, up)
    _cycle_hand(ch, side, t, rng.uniform(0.6, 1.2), "open", "fist")
    if rng.random() < 0.5:  # both hands
        _hands_in_front(ch, t, other, up)
        ch.hands[other].curl, ch.hands[other].spread = ch.hands[side].curl.copy(), ch.hands[side].spread.copy()


def _count(ch, t, rng, duration):
    side, _ = _one_arm(rng)
    up = _raise(rng, t)
    _hands_in_front(ch, t, side, up)
    ch.arms[side].elevation = ch.arms[side].elevation + 0.5 * up
    ch.arms[side].elbow = ch.arms[side].elbow + 0.5 * up
    shapes = ["fist", "count1", "count2", "count3", "count4", "count5"]
    step = max(duration / len(shapes), 0.4)
    _set_hand(ch, side, _hand_sequence(t, shapes, [i * step for i in range(len(shapes))], 0.2))


def _thumbs_up(ch, t, rng, duration):
    side, other = _one_arm(rng)
    start, length = _event(rng, duration, rng.uniform(1.5, 2.5))
    up = _pulse(t, start, 0.25 * length, 0.5 * length, 0.25 * length)
    _hands_in_front(ch, t, side, up)
    ch.arms[side].twist = 0.3 * up  # thumb to the sky
    _set_hand(ch, side, _hand_sequence(t, ["relaxed", "thumbs_up", "relaxed"], [0, start + 0.1 * length, start + 0.8 * length], 0.2))
    if rng.random() < 0.4:
        _hands_in_front(ch, t, other, up)
        ch.arms[other].twist = 0.3 * up
        _set_hand(ch, other, _hand_sequence(t, ["relaxed", "thumbs_up", "relaxed"], [0, start + 0.1 * length, start + 0.8 * length], 0.2))


def _pinch(ch, t, rng, duration):
    side, _ = _one_arm(rng)
    up = _raise(rng, t)
    _hands_in_front(ch, t, side, up)
    ch.arms[side].wrist = 0.3 * np.sin(2 * np.pi * 0.5 * t)
    _cycle_hand(ch, side, t, rng.uniform(0.8, 1.5), "count5", "pinch")


def _walk_gesture(ch, t, rng, duration):
    _walk(ch, t, rng, duration)
    side, _ = _one_arm(rng)
    up = _raise(rng, t, 0.6)
    _hands_in_front(ch, t, side, up)
    _set_hand(ch, side, _random_gestures(rng, t, duration, ("point", "thumbs_up", "count2", "count3", "fist", "open")))


_FAMILY_FUNCTIONS = {
    "idle": _idle, "walk": _walk, "walk_backward": _walk_backward, "run": _run, "side_step": _side_step, "turn": _turn,
    "jump": _jump, "jumping_jacks": _jumping_jacks, "squat": _squat, "sit_down": _sit_down, "bend": _bend,
    "stretch": _stretch, "reach": _reach, "wave": _wave, "point": _point, "clap": _clap, "arm_circles": _arm_circles,
    "kick": _kick, "punch": _punch, "dance_sway": _dance_sway, "dance_bounce": _dance_bounce, "dance_twist": _dance_twist,
    "fist_open": _fist_open, "count": _count, "thumbs_up": _thumbs_up, "pinch": _pinch, "walk_gesture": _walk_gesture,
}
MOTION_FAMILIES = tuple(_FAMILY_FUNCTIONS)
# Families with their own hands; the others get random finger gestures on free hands.
_OWN_HANDS = {"walk", "run", "wave", "point", "clap", "arm_circles", "kick", "punch", "dance_bounce", "fist_open",
              "count", "thumbs_up", "pinch", "walk_gesture", "reach", "stretch", "jumping_jacks"}


# ----------------------------------------------------------------------------- assembly
def _axis_angle(axis, angle) -> torch.Tensor:
    """(F, 3) rotation vectors about a fixed axis by per-frame angles."""
    return torch.as_tensor(np.asarray(angle, float)[:, None] * np.asarray(axis, float)[None], dtype=torch.float64)


def _compose(*rotvecs) -> torch.Tensor:
    """Rotation matrices of R1 @ R2 @ ... from (F, 3) rotation vectors (applied right to left)."""
    out = roma.rotvec_to_rotmat(rotvecs[0])
    for r in rotvecs[1:]:
        out = out @ roma.rotvec_to_rotmat(r)
    return out


def _mirror_rotmat(rotmat: torch.Tensor) -> torch.Tensor:
    """Left-side rotation to the right side: reflect through the body's sagittal (x = 0) plane."""
    m = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=rotmat.dtype))
    return m @ rotmat @ m


def _arm_rotation(arm: _Arm) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-arm local rotations (collar, shoulder, elbow, wrist), each (F, 3, 3)."""
    e, a = arm.elevation, arm.azimuth
    direction = np.stack([np.sin(e) * np.cos(a), -np.cos(e), np.sin(e) * np.sin(a)], axis=1)
    rest = np.array([1.0, 0.0, 0.0])
    # Swing from the T-pose arm to the target direction through the hanging arm, so the
    # elbow plane stays anatomical (forearm bends forwards) whatever the elevation.
    down = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.0, -np.pi / 2], dtype=torch.float64))  # arm hanging, palm in
    hanging = np.array([0.0, -1.0, 0.0])
    axis = np.cross(hanging, direction)
    norm = np.linalg.norm(axis, axis=1, keepdims=True)
    angle = np.arctan2(norm[:, 0], direction @ hanging)
    axis = np.where(norm > 1e-8, axis / np.maximum(norm, 1e-12), np.array([0.0, 0.0, 1.0]))
    swing = roma.rotvec_to_rotmat(torch.as_tensor(axis * angle[:, None]))
    twist = roma.rotvec_to_rotmat(torch.as_tensor(rest[None] * arm.twist[:, None]))
    shoulder = swing @ down @ twist
    collar = _compose(_axis_angle((0, 0, 1), arm.shrug))
    elbow = _compose(_axis_angle((0, 1, 0), -arm.elbow))
    wrist = _compose(_axis_angle((0, 0, 1), -arm.wrist))
    return collar, shoulder, elbow, wrist


def _leg_rotation(leg: _Leg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-leg local rotations (hip, knee, ankle, toes), each (F, 3, 3)."""
    hip = _compose(_axis_angle((0, 0, 1), leg.hip_abd), _axis_angle((1, 0, 0), -leg.hip_flex), _axis_angle((0, 1, 0), leg.hip_rot))
    knee = _compose(_axis_angle((1, 0, 0), leg.knee))
    ankle = _compose(_axis_angle((1, 0, 0), -leg.ankle))
    toes = _compose(_axis_angle((1, 0, 0), -leg.toes))
    return hip, knee, ankle, toes


def _hand_rotations(hand: _Hand) -> torch.Tensor:
    """Left-hand finger rotations (F, 15, 3, 3) in MANO order from curls and spread."""
    F = hand.curl.shape[0]
    out = torch.zeros(F, 15, 3, 3, dtype=torch.float64)
    spread_angle = {"index": 0.12, "middle": 0.0, "ring": -0.1, "pinky": -0.22, "thumb": 0.0}
    flex = (1.45, 1.6, 1.0)
    for f, finger in enumerate(FINGERS):
        curl = hand.curl[:, f]
        for k in range(3):
            if finger == "thumb":
                # The thumb folds across the palm: down towards the palm and towards the little finger.
                amount = curl * (0.9, 0.7, 0.9)[k]
                rotation = _compose(_axis_angle((0, 1, 0), 0.5 * amount if k == 0 else 0.0 * amount), _axis_angle((1, 0, 0), amount))
            else:
                # Fingers bend towards the palm: about -Z for the left hand (palm down, fingers along +X).
                side = hand.spread * spread_angle[finger] if k == 0 else 0.0 * curl
                rotation = _compose(_axis_angle((0, 1, 0), -np.asarray(side) if k == 0 else side), _axis_angle((0, 0, 1), -curl * flex[k]))
            out[:, 3 * f + k] = rotation
    return out


def _full_rotations(ch: _Channels) -> torch.Tensor:
    """(F, 52, 3, 3) local rotations; joint 0 holds global_orient in the character frame."""
    F = ch.num_frames
    rot = torch.eye(3, dtype=torch.float64).repeat(F, 52, 1, 1)
    heading = _compose(_axis_angle((0, 0, 1), ch.heading))
    to_character = torch.as_tensor(CANONICAL_TO_CHARACTER, dtype=torch.float64)
    pelvis = _compose(_axis_angle((0, 1, 0), ch.pelvis_yaw), _axis_angle((1, 0, 0), ch.pelvis_pitch), _axis_angle((0, 0, 1), -ch.pelvis_roll))
    rot[:, 0] = heading @ to_character @ pelvis
    for joint, share in (("spine1", 0.35), ("spine2", 0.35), ("spine3", 0.3)):
        rot[:, J[joint]] = _compose(_axis_angle((0, 1, 0), share * ch.spine_twist), _axis_angle((1, 0, 0), share * ch.spine_flex),
                                    _axis_angle((0, 0, 1), -share * ch.spine_lat))
    for joint, share in (("neck", 0.5), ("head", 0.5)):
        rot[:, J[joint]] = _compose(_axis_angle((0, 1, 0), share * ch.neck_yaw), _axis_angle((1, 0, 0), share * ch.neck_pitch))
    for side in SIDES:
        mirror = _mirror_rotmat if side == "right" else (lambda r: r)
        hip, knee, ankle, toes = _leg_rotation(ch.legs[side])
        collar, shoulder, elbow, wrist = _arm_rotation(ch.arms[side])
        for name, value in (("hip", hip), ("knee", knee), ("ankle", ankle), ("foot", toes), ("collar", collar),
                            ("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist)):
            rot[:, J[f"{side}_{name}"]] = mirror(value)
        fingers = _hand_rotations(ch.hands[side])
        start = J[f"{side}_index1"]
        rot[:, start:start + 15] = mirror(fingers)
    return rot


def _assemble(ch: _Channels, family: str, seed: int, fps: float, betas) -> MotionSequence:
    _clip_limits(ch)
    # The character frame: facing -Y with the pelvis above the origin at frame 0.
    ch.heading = ch.heading - ch.heading[0]
    ch.travel = ch.travel - ch.travel[0]
    rot = _full_rotations(ch)
    transl = ground_translation(rot, betas, ch.travel, ch.lift)
    rotvec = roma.rotmat_to_rotvec(rot).numpy()  # (F, 52, 3)
    return MotionSequence(
        family=family, seed=int(seed), fps=float(fps),
        global_orient=rotvec[:, 0].astype(np.float32), body_pose=rotvec[:, 1:22].astype(np.float32),
        left_hand_pose=rotvec[:, 22:37].astype(np.float32), right_hand_pose=rotvec[:, 37:52].astype(np.float32),
        transl=transl.astype(np.float32), betas=np.asarray(betas, np.float32),
    )


def generate_motion(family: str, seed: int, num_frames: int, fps: float, betas=None) -> MotionSequence:
    """A random motion of `family` (see MOTION_FAMILIES), deterministic in (family, seed, num_frames, fps).

    The root is placed for the procedural body with `betas` (default zeros): feet on the
    ground, pelvis above the origin at frame 0, facing -Y.
    """
    if family not in _FAMILY_FUNCTIONS:
        raise InputError(f"motion family '{family}' is unknown; choose one of: {', '.join(MOTION_FAMILIES)}")
    if int(num_frames) < 1:
        raise InputError(f"num_frames={num_frames}: a motion needs at least one frame")
    if not (np.isfinite(fps) and fps > 0):
        raise InputError(f"fps={fps}: the frame rate must be positive")
    num_frames = int(num_frames)
    rng = np.random.default_rng([MOTION_FAMILIES.index(family), int(seed) & 0xFFFFFFFF, 7])
    t = np.arange(num_frames) / float(fps)
    duration = max(num_frames / float(fps), 1e-3)
    ch = _Channels(num_frames)
    _FAMILY_FUNCTIONS[family](ch, t, rng, duration)
    if family not in _OWN_HANDS:
        for side in SIDES:
            _set_hand(ch, side, _random_gestures(rng, t, duration))
    betas = np.zeros(10) if betas is None else np.asarray(betas, float).reshape(-1)
    return _assemble(ch, family, seed, fps, betas)
