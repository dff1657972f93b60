"""The procedural motion library: shapes, character frame, continuity, joint limits, no arm
through the torso, feet on the ground, and the fixed train/test split."""

import numpy as np
import pytest
import roma
import torch

from dimo_engine.body.kinematics import procedural_rest_joints, reground_motion
from dimo_engine.body.motion_sequence import MotionSequence
from dimo_engine.body.motions import JOINT_ANGLE_LIMITS, MOTION_FAMILIES, generate_motion
from dimo_engine.body.train_test_split import HELD_OUT_FAMILIES, TRAIN_FAMILIES, motion_split
from dimo_engine.body.skeleton import JOINT_INDEX, SMPLH_JOINT_NAMES, SMPLH_PARENTS
from dimo_engine.errors import InputError

# (frames, fps) settings the samples cycle through: short, model-like, and long clips.
SETTINGS = ((17, 12.0), (40, 24.0), (60, 30.0), (9, 8.0))
SEEDS_PER_FAMILY = 8
ARM_POINTS = [JOINT_INDEX[n] for s in ("left", "right") for n in (f"{s}_elbow", f"{s}_wrist", f"{s}_index3", f"{s}_middle3", f"{s}_thumb3")]
FEET = [JOINT_INDEX[n] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]


def posed_joints(motion: MotionSequence) -> np.ndarray:
    """(F, 52, 3) joints of the procedural body, by plain forward kinematics (independent of smplx)."""
    rotvec = np.concatenate([motion.global_orient[:, None], motion.body_pose, motion.left_hand_pose, motion.right_hand_pose], axis=1)
    rot = roma.rotvec_to_rotmat(torch.as_tensor(rotvec, dtype=torch.float64)).numpy()
    rest = procedural_rest_joints(motion.betas)
    F = rot.shape[0]
    world_rot = np.zeros_like(rot)
    joints = np.zeros((F, 52, 3))
    for j in range(52):
        parent = SMPLH_PARENTS[j]
        if parent < 0:
            world_rot[:, j], joints[:, j] = rot[:, j], rest[j]
        else:
            world_rot[:, j] = world_rot[:, parent] @ rot[:, j]
            joints[:, j] = joints[:, parent] + np.einsum("fij,j->fi", world_rot[:, parent], rest[j] - rest[parent])
    return joints + motion.transl[:, None]


def distance_to_segment(points, a, b):
    ab = b - a
    t = np.clip(((points - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


@pytest.fixture(scope="module")
def samples():
    out = []
    for family in MOTION_FAMILIES:
        for seed in range(SEEDS_PER_FAMILY):
            frames, fps = SETTINGS[seed % len(SETTINGS)]
            motion = generate_motion(family, 1000 + seed, frames, fps)
            out.append((motion, posed_joints(motion)))
    return out


def test_library_has_the_required_families():
    assert len(MOTION_FAMILIES) >= 20
    for family in ("walk", "run", "turn", "jump", "squat", "wave", "point", "clap", "arm_circles", "kick", "punch",
                   "sit_down", "reach", "bend", "fist_open", "count", "thumbs_up", "pinch"):
        assert family in MOTION_FAMILIES
    assert sum(f.startswith("dance") for f in MOTION_FAMILIES) >= 3


@pytest.mark.slow
def test_every_family_gives_valid_sequences_in_the_character_frame(samples):
    for motion, joints in samples:
        F = motion.num_frames
        assert motion.body_pose.shape == (F, 21, 3) and motion.left_hand_pose.shape == (F, 15, 3)
        assert motion.global_orient.shape == (F, 3) and motion.transl.shape == (F, 3) and motion.betas.shape == (10,)
        motion.validate()
        # pelvis above the origin, facing -Y (within the body's own sway) at frame 0
        np.testing.assert_allclose(joints[0, 0, :2], 0.0, atol=1e-6)
        facing = roma.rotvec_to_rotmat(torch.as_tensor(motion.global_orient[0], dtype=torch.float64)).numpy() @ [0.0, 0.0, 1.0]
        heading = np.arctan2(facing[0], -facing[1])
        assert abs(heading) < 0.45, (motion.family, heading)
        # feet on the ground: the foot joints (2.5 cm above the sole, 8 cm for the ankles) never
        # sink and stand on the ground in most frames (jumps and runs fly in between)
        foot_height = joints[:, FEET, 2].min(axis=1)
        assert foot_height.min() > 0.005, motion.family
        assert np.mean(foot_height < 0.07) >= 0.5, motion.family
        assert joints[:, 0, 2].min() > 0.3  # the pelvis stays up, even sitting


@pytest.mark.slow
def test_motions_are_continuous(samples):
    for motion, joints in samples:
        if motion.num_frames < 2:
            continue
        speed = np.linalg.norm(np.diff(joints, axis=0), axis=-1).max() * motion.fps  # m/s of the fastest joint
        assert speed < 12.0, (motion.family, motion.seed, speed)
        # rotations change smoothly too (no axis-angle flips): geodesic step per frame
        rot = roma.rotvec_to_rotmat(torch.as_tensor(motion.body_pose, dtype=torch.float64))
        step = roma.rotmat_geodesic_distance(rot[1:], rot[:-1]).max().item() * motion.fps
        assert step < 25.0, (motion.family, step)


@pytest.mark.slow
def test_joint_limits_hold(samples):
    names = SMPLH_JOINT_NAMES[1:22]
    for motion, _ in samples:
        angles = np.linalg.norm(motion.body_pose, axis=-1).max(axis=0)
        for name, angle in zip(names, angles):
            assert angle <= JOINT_ANGLE_LIMITS[name] + 1e-4, (motion.family, name, angle)
        knee = motion.body_pose[:, [JOINT_INDEX["left_knee"] - 1, JOINT_INDEX["right_knee"] - 1]]
        assert (knee[..., 0] >= -1e-4).all(), motion.family  # knees bend one way only
        left_elbow, right_elbow = (motion.body_pose[:, JOINT_INDEX[f"{s}_elbow"] - 1] for s in ("left", "right"))
        assert (left_elbow[:, 1] <= 1e-4).all() and (right_elbow[:, 1] >= -1e-4).all(), motion.family  # and elbows
        assert np.abs(left_elbow[:, [0, 2]]).max() < 1e-4 and np.abs(right_elbow[:, [0, 2]]).max() < 1e-4
        fingers = np.linalg.norm(np.concatenate([motion.left_hand_pose, motion.right_hand_pose], 1), axis=-1)
        assert fingers.max() < 1.7, motion.family


@pytest.mark.slow
def test_no_arm_through_the_torso(samples):
    for motion, joints in samples:
        # torso axis from the pelvis to spine3; the torso is at least 0.10 m deep on each side of it
        d = distance_to_segment(joints[:, ARM_POINTS], joints[:, [0]], joints[:, [JOINT_INDEX["spine3"]]])
        assert d.min() > 0.12, (motion.family, motion.seed, d.min())


def test_generation_is_deterministic_and_seeded():
    a = generate_motion("walk", 5, 20, 12.0)
    b = generate_motion("walk", 5, 20, 12.0)
    c = generate_motion("walk", 6, 20, 12.0)
    np.testing.assert_array_equal(a.body_pose, b.body_pose)
    np.testing.assert_array_equal(a.transl, b.transl)
    assert not np.allclose(a.body_pose, c.body_pose)


def test_locomotion_travels_and_gestures_move_fingers():
    walk = generate_motion("walk", 3, 48, 24.0)
    travelled = np.linalg.norm(walk.transl[-1, :2] - walk.transl[0, :2])
    assert 0.8 < travelled < 4.0  # about 1-1.5 m/s for 2 s
    assert walk.transl[-1, 1] < walk.transl[0, 1]  # forwards is -Y
    count = generate_motion("count", 3, 72, 24.0)
    hand = count.right_hand_pose if np.ptp(count.right_hand_pose) > np.ptp(count.left_hand_pose) else count.left_hand_pose
    assert np.ptp(hand[:, 0]) > 0.8  # the index finger opens and closes
    jump = generate_motion("jump", 3, 48, 24.0)
    assert posed_joints(jump)[:, FEET, 2].min(axis=1).max() > 0.1  # both feet leave the ground


def test_motion_npz_round_trip_and_validation(tmp_path):
    motion = generate_motion("wave", 1, 12, 12.0)
    path = motion.save_npz(tmp_path / "motion.npz", joints=np.zeros((12, 52, 3)))
    loaded = MotionSequence.load_npz(path)
    assert loaded.family == "wave" and loaded.fps == 12.0 and loaded.num_frames == 12
    np.testing.assert_allclose(loaded.body_pose, motion.body_pose)
    assert "joints" in np.load(path)
    np.savez(tmp_path / "bad.npz", global_orient=np.zeros((3, 3)), body_pose=np.zeros((2, 21, 3)), left_hand_pose=np.zeros((3, 15, 3)),
             right_hand_pose=np.zeros((3, 15, 3)), transl=np.zeros((3, 3)), betas=np.zeros(10), fps=12.0)
    with pytest.raises(InputError, match="body_pose"):
        MotionSequence.load_npz(tmp_path / "bad.npz")
    with pytest.raises(InputError, match="unknown"):
        generate_motion("moonwalk", 0, 10, 12.0)


def test_reground_keeps_feet_on_the_ground_for_other_betas():
    motion = generate_motion("squat", 2, 24, 12.0)
    betas = np.zeros(10)
    betas[[0, 2]] = (2.0, 2.0)  # a tall, long-legged body
    naive = MotionSequence(**{**motion.__dict__, "betas": betas})
    assert abs(posed_joints(naive)[:, FEET, 2].min() - 0.025) > 0.02  # betas alone would lift or sink the feet
    moved = reground_motion(motion, betas)
    joints = posed_joints(moved)
    np.testing.assert_allclose(joints[:, FEET, 2].min(axis=1), 0.025, atol=0.005)
    np.testing.assert_allclose(joints[0, 0, :2], 0.0, atol=1e-6)
    np.testing.assert_array_equal(moved.body_pose, motion.body_pose)


def test_split_is_fixed_and_disjoint():
    train = motion_split("train", 500, seed=0)
    test = motion_split("test", 200, seed=0)
    assert train == motion_split("train", 500, seed=0)
    assert not set(train) & set(test)
    assert {f for f, _ in train} == set(TRAIN_FAMILIES)
    assert not {f for f, _ in train} & set(HELD_OUT_FAMILIES)
    assert set(HELD_OUT_FAMILIES) <= {f for f, _ in test}
    assert max(s for _, s in train) < min(s for _, s in test)
    assert len({s for _, s in train}) == 500
    with pytest.raises(InputError):
        motion_split("validation", 3)


def test_motions_cli_lists_and_writes(tmp_path, monkeypatch, capsys):
    from dimo_engine.cli.main import main

    monkeypatch.setenv("DIMO_CACHE", str(tmp_path / "cache"))
    assert main(["motions"]) == 0
    listing = capsys.readouterr().out
    assert all(family in listing for family in MOTION_FAMILIES) and "held out" in listing
    out = tmp_path / "clap.npz"
    assert main(["motions", "--family", "clap", "--seed", "4", "--frames", "12", "--fps", "12", "--out", str(out)]) == 0
    written = np.load(out)
    assert written["joints"].shape == (12, 52, 3)
    np.testing.assert_allclose(written["body_pose"], generate_motion("clap", 4, 12, 12.0).body_pose)
    assert main(["motions", "--family", "clap", "--out", str(tmp_path / "clap.txt")]) == 2
