"""BVH import: parsing, name mapping, retargeting onto SMPL-H (bone directions follow the file),
unit and axis detection, the character frame, resampling, and clear errors."""

from pathlib import Path

import numpy as np
import pytest

from dimo_engine.body.bvh import BvhJoint, load_bvh, map_bvh_joints, parse_bvh
from dimo_engine.body.skeleton import JOINT_INDEX as J
from dimo_engine.errors import InputError
from test_motions import posed_joints  # the independent forward kinematics of the motion tests

# 8 frames at 30 fps, centimetres, Y up, A-pose (arms 45 degrees down), actor turned to face +X
# and walking 2 cm a frame along +X; the left elbow bends 10 degrees a frame in the arm's
# plane, the left hip flexes 4 degrees a frame, the right arm rises 5 degrees a frame.
FIXTURE = Path(__file__).parent / "data" / "tiny_apose_cm.bvh"


def angle_deg(a, b):
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def elevation_deg(v):
    return np.degrees(np.arcsin(v[..., 2] / np.linalg.norm(v, axis=-1)))


def write_bvh(path, bvh, offsets, channels, motion):
    """Write a BvhFile's hierarchy with new offsets/channels and motion rows."""
    children = {i: [k for k, j in enumerate(bvh.joints) if j.parent == i] for i in range(len(bvh.joints))}
    lines = ["HIERARCHY"]

    def emit(i, depth):
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if i == 0 else 'JOINT'} {bvh.joints[i].name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offsets[i][0]:.6f} {offsets[i][1]:.6f} {offsets[i][2]:.6f}")
        lines.append(f"{pad}  CHANNELS {len(channels[i])} {' '.join(channels[i])}")
        for k in children[i]:
            emit(k, depth + 1)
        if bvh.joints[i].end_offset is not None:
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET 0 0.01 0", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {len(motion)}", f"Frame Time: {bvh.frame_time}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    Path(path).write_text("\n".join(lines) + "\n")


def test_parse_and_name_mapping():
    bvh = parse_bvh(FIXTURE)
    assert len(bvh.joints) == 26 and bvh.motion.shape == (8, 6 + 25 * 3)
    mapping = {name: bvh.joints[b].name for name, b in ((n, map_bvh_joints(bvh.joints)[J[n]]) for n in
               ("pelvis", "spine1", "spine2", "spine3", "left_collar", "left_shoulder", "left_elbow", "right_wrist", "left_foot", "right_index2"))}
    assert mapping == {"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1", "spine3": "Spine2", "left_collar": "LeftShoulder",
                       "left_shoulder": "LeftArm", "left_elbow": "LeftForeArm", "right_wrist": "RightHand", "left_foot": "LeftToeBase",
                       "right_index2": "RightHandIndex2"}


def test_other_naming_conventions_map():
    names = ["Hips", "LowerBack", "Spine", "Spine1", "Neck", "Neck1", "Head", "mixamorig:LeftShoulder", "l_upperarm", "LeftForeArm",
             "Hand_L", "LThumb", "LeftUpLeg", "LeftLeg", "LeftFoot", "LeftToeBase", "RightHandPinky2"]
    parents = [-1, 0, 1, 2, 3, 4, 5, 3, 7, 8, 9, 10, 0, 12, 13, 14, 9]
    joints = [BvhJoint(n, p, np.zeros(3)) for n, p in zip(names, parents)]
    mapping = {k: names[v] for k, v in map_bvh_joints(joints).items()}
    assert mapping[J["spine1"]] == "LowerBack" and mapping[J["spine2"]] == "Spine" and mapping[J["spine3"]] == "Spine1"
    assert mapping[J["neck"]] == "Neck" and mapping[J["head"]] == "Head"
    assert mapping[J["left_collar"]] == "mixamorig:LeftShoulder" and mapping[J["left_shoulder"]] == "l_upperarm"
    assert mapping[J["left_wrist"]] == "Hand_L" and mapping[J["left_thumb1"]] == "LThumb"
    assert mapping[J["right_pinky2"]] == "RightHandPinky2"


def test_retargeted_bones_follow_the_file():
    motion = load_bvh(FIXTURE)
    assert motion.num_frames == 8 and motion.fps == pytest.approx(30.0, rel=1e-4)
    joints = posed_joints(motion)
    k = np.arange(8)
    upper = joints[:, J["left_elbow"]] - joints[:, J["left_shoulder"]]
    fore = joints[:, J["left_wrist"]] - joints[:, J["left_elbow"]]
    np.testing.assert_allclose(angle_deg(upper, fore), 10.0 * k, atol=1.0)
    np.testing.assert_allclose(elevation_deg(upper), -45.0, atol=1.0)  # the A-pose arm, not the T-pose
    right = joints[:, J["right_elbow"]] - joints[:, J["right_shoulder"]]
    np.testing.assert_allclose(elevation_deg(right), -45.0 + 5.0 * k, atol=1.0)
    thigh = joints[:, J["left_knee"]] - joints[:, J["left_hip"]]
    flexion = angle_deg(thigh, thigh[:1])
    np.testing.assert_allclose(flexion, 4.0 * k, atol=1.0)
    assert (np.diff(thigh[:, 1]) < 0).all()  # the thigh swings forwards, towards -Y


def test_character_frame_units_and_ground():
    motion = load_bvh(FIXTURE)
    joints = posed_joints(motion)
    np.testing.assert_allclose(joints[0, 0, :2], 0.0, atol=1e-6)
    # faces -Y at frame 0 (the file's actor faced +X) and walks that way: 7 x 2 cm, in metres
    chest = joints[0, J["left_shoulder"]] - joints[0, J["right_shoulder"]]
    assert chest[0] > 0.3 and abs(chest[1]) < 0.02  # body's left on +X, so facing -Y
    travel = joints[-1, 0] - joints[0, 0]
    assert travel[1] == pytest.approx(-0.14, abs=0.01) and abs(travel[0]) < 1e-3
    assert 0.8 < joints[0, 0, 2] < 1.1
    assert joints[:, [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]], 2].min() == pytest.approx(0.03, abs=0.015)


def test_z_up_metres_file_gives_the_same_motion(tmp_path):
    bvh = parse_bvh(FIXTURE)
    to_z_up = np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]])  # (x, y, z) -> (x, -z, y)
    offsets = [to_z_up @ j.offset / 100.0 for j in bvh.joints]
    channels, columns = [], []
    column = 0
    for j in bvh.joints:
        names = []
        for name in j.channels:
            if name.endswith("position"):
                names.append(name)
                columns.append((column, "pos", name[0]))
            else:  # Rz(a) Rx(b) Ry(c) in Y-up axes is R-y(a) Rx(b) Rz(c) in Z-up axes
                names.append({"Z": "Yrotation", "X": "Xrotation", "Y": "Zrotation"}[name[0]])
                columns.append((column, "rot", name[0]))
            column += 1
        channels.append(names)
    motion = bvh.motion.copy()
    for column, kind, axis in columns:
        if kind == "pos":
            source = {"X": (0, 1.0), "Y": (2, -1.0), "Z": (1, 1.0)}[axis]  # new x = x, new y = -z, new z = y
            motion[:, column] = bvh.motion[:, column - {"X": 0, "Y": 1, "Z": 2}[axis] + source[0]] * source[1] / 100.0
        elif axis == "Z":
            motion[:, column] = -bvh.motion[:, column]
    write_bvh(tmp_path / "z_up_m.bvh", bvh, offsets, channels, motion)
    original, converted = load_bvh(FIXTURE), load_bvh(tmp_path / "z_up_m.bvh")
    np.testing.assert_allclose(posed_joints(converted), posed_joints(original), atol=2e-3)


def test_resampling_to_model_fps():
    motion = load_bvh(FIXTURE, fps=15.0)
    assert motion.fps == 15.0 and motion.num_frames == 4  # 7/30 s at 15 fps
    joints = posed_joints(motion)
    upper = joints[:, J["left_elbow"]] - joints[:, J["left_shoulder"]]
    fore = joints[:, J["left_wrist"]] - joints[:, J["left_elbow"]]
    np.testing.assert_allclose(angle_deg(upper, fore), [0.0, 20.0, 40.0, 60.0], atol=1.0)


def test_bad_files_are_reported(tmp_path):
    (tmp_path / "text.bvh").write_text("hello world")
    with pytest.raises(InputError, match="not a BVH"):
        load_bvh(tmp_path / "text.bvh")
    truncated = FIXTURE.read_text().rsplit("\n", 4)[0]
    (tmp_path / "short.bvh").write_text(truncated)
    with pytest.raises(InputError, match="frames"):
        load_bvh(tmp_path / "short.bvh")
    renamed = FIXTURE.read_text().replace("LeftUpLeg", "Thing1").replace("RightUpLeg", "Thing2")
    (tmp_path / "renamed.bvh").write_text(renamed)
    with pytest.raises(InputError, match="left_hip"):
        load_bvh(tmp_path / "renamed.bvh")
    with pytest.raises(InputError, match="cannot read"):
        load_bvh(tmp_path / "missing.bvh")


def test_motions_cli_converts_a_bvh(tmp_path, monkeypatch):
    from dimo_engine.body.motion_sequence import MotionSequence
    from dimo_engine.cli.main import main

    monkeypatch.setenv("DIMO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "mocap.npz"
    assert main(["motions", "--bvh", str(FIXTURE), "--fps", "15", "--out", str(out)]) == 0
    motion = MotionSequence.load_npz(out)
    assert motion.num_frames == 4 and motion.fps == 15.0
    np.testing.assert_allclose(np.load(out)["joints"], posed_joints(motion), atol=1e-4)  # smplx agrees with plain FK
