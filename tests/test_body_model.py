"""The procedural SMPL-H body: joint order, loading through smplx, rest pose, skinning and shape."""

import numpy as np
import pytest
import roma
import torch

from dimo_engine.body import SMPLH_JOINT_NAMES, SMPLH_PARENTS, load_body_model, make_body_model_file
from dimo_engine.body.motion_sequence import MotionSequence
from dimo_engine.body.skeleton import JOINT_INDEX, descendants, rest_joint_positions


@pytest.fixture(scope="module")
def body_file(tmp_path_factory):
    return make_body_model_file(tmp_path_factory.mktemp("body") / "SMPLH_TEST.npz")


@pytest.fixture(scope="module")
def body(body_file):
    return load_body_model(body_file)


def still_motion(frames=1, **overrides) -> MotionSequence:
    fields = dict(
        family="still", seed=0, fps=12.0,
        global_orient=np.zeros((frames, 3)), body_pose=np.zeros((frames, 21, 3)),
        left_hand_pose=np.zeros((frames, 15, 3)), right_hand_pose=np.zeros((frames, 15, 3)),
        transl=np.zeros((frames, 3)), betas=np.zeros(10),
    )
    fields.update(overrides)
    return MotionSequence(**fields)


def test_joint_names_and_tree_follow_smplh():
    assert len(SMPLH_JOINT_NAMES) == 52
    assert SMPLH_JOINT_NAMES[:3] == ("pelvis", "left_hip", "right_hip")
    assert SMPLH_JOINT_NAMES[15] == "head" and SMPLH_JOINT_NAMES[18] == "left_elbow" and SMPLH_JOINT_NAMES[21] == "right_wrist"
    assert SMPLH_JOINT_NAMES[22:25] == ("left_index1", "left_index2", "left_index3")
    assert SMPLH_JOINT_NAMES[34] == "left_thumb1" and SMPLH_JOINT_NAMES[37] == "right_index1" and SMPLH_JOINT_NAMES[51] == "right_thumb3"
    assert SMPLH_PARENTS[0] == -1
    assert all(SMPLH_PARENTS[j] < j for j in range(1, 52))
    for side, wrist in (("left", 20), ("right", 21)):
        for finger in ("index", "middle", "pinky", "ring", "thumb"):
            first = JOINT_INDEX[f"{side}_{finger}1"]
            assert SMPLH_PARENTS[first] == wrist
            assert list(SMPLH_PARENTS[first + 1:first + 3]) == [first, first + 1]


def test_file_loads_through_smplx_with_and_without_pca(body_file):
    import smplx

    for use_pca in (False, True):
        model = smplx.create(str(body_file), model_type="smplh", ext="npz", use_pca=use_pca, num_pca_comps=12)
        assert isinstance(model, smplx.SMPLH)
        output = model(return_verts=True)
        assert output.vertices.shape[1] >= 6890
        assert output.joints.shape[1] == 52 + 21  # smplx appends its vertex-picked extra joints
    assert np.asarray(model.parents).tolist() == SMPLH_PARENTS.tolist()


def test_generation_is_deterministic_and_regressor_reproduces_joints(body_file, tmp_path):
    again = np.load(make_body_model_file(tmp_path / "again.npz"))
    first = np.load(body_file)
    for key in ("v_template", "f", "weights", "shapedirs", "J_regressor"):
        np.testing.assert_array_equal(first[key], again[key])
    np.testing.assert_allclose(first["J_regressor"] @ first["v_template"], rest_joint_positions(), atol=1e-9)
    weights = first["weights"]
    assert weights.min() >= 0 and np.allclose(weights.sum(axis=1), 1.0)


def test_mesh_is_closed_and_oriented(body_file):
    faces = np.load(body_file)["f"].astype(np.int64)
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    # every directed edge once and its reverse once: closed surfaces with consistent winding
    assert len(np.unique(directed, axis=0)) == len(directed)
    undirected = np.unique(np.sort(directed, axis=1), axis=0)
    assert len(undirected) * 2 == len(directed)


def test_zero_pose_is_rest_pose(body):
    joints, vertices = body.forward(still_motion(frames=2))
    np.testing.assert_allclose(vertices[0], body.rest_vertices(), atol=1e-5)
    np.testing.assert_allclose(joints[1], body.rest_joints(), atol=1e-5)
    np.testing.assert_allclose(joints[0], rest_joint_positions(), atol=1e-5)


def test_rotating_the_elbow_moves_only_forearm_and_hand(body):
    elbow = JOINT_INDEX["left_elbow"]
    body_pose = np.zeros((1, 21, 3))
    body_pose[0, elbow - 1] = (0.0, -1.2, 0.0)  # bend the forearm forwards about Y
    rest = body.rest_vertices()
    _, posed = body.forward(still_motion(body_pose=body_pose))
    moved = np.linalg.norm(posed[0] - rest, axis=1) > 1e-5

    joints = rest_joint_positions()
    upper_arm = joints[elbow] - joints[JOINT_INDEX["left_shoulder"]]
    upper_arm /= np.linalg.norm(upper_arm)
    beyond_elbow = (rest - joints[elbow]) @ upper_arm
    assert moved.any()
    # moved vertices lie on the arm past a thin blend zone before the elbow
    assert beyond_elbow[moved].min() > -0.06
    assert np.linalg.norm(rest[moved] - joints[elbow], axis=1).max() < 0.5
    # every vertex skinned to the hand moved, nothing on the other side of the body did
    hand = body.weights[:, descendants(JOINT_INDEX["left_wrist"])].sum(axis=1) > 0.5
    assert moved[hand].all()
    assert not moved[rest[:, 0] < 0.1].any()


def test_posed_joints_follow_global_rotation_and_translation(body):
    rotation = roma.rotvec_to_rotmat(torch.tensor([0.3, -0.2, 0.5])).numpy()
    motion = still_motion(global_orient=roma.rotmat_to_rotvec(torch.tensor(rotation))[None].numpy(), transl=np.array([[0.5, -1.0, 0.9]]))
    joints, _ = body.forward(motion)
    rest = body.rest_joints()
    expected = (rest - rest[0]) @ rotation.T + rest[0] + np.array([0.5, -1.0, 0.9])
    np.testing.assert_allclose(joints[0], expected, atol=1e-5)


def test_betas_change_proportions(body):
    def measure(betas):
        vertices = body.rest_vertices(betas)
        joints = body.rest_joints(betas)
        torso = np.abs(vertices[:, 1] - joints[JOINT_INDEX["spine2"], 1]) < 0.02
        torso &= np.abs(vertices[:, 0]) < 0.25
        return {
            "height": np.ptp(vertices[:, 1]),
            "waist": np.ptp(vertices[torso, 0]),
            "leg": joints[JOINT_INDEX["left_hip"], 1] - joints[JOINT_INDEX["left_ankle"], 1],
            "arm": np.linalg.norm(joints[JOINT_INDEX["left_wrist"]] - joints[JOINT_INDEX["left_shoulder"]]),
        }

    base = measure(np.zeros(10))
    taller = measure(np.eye(10)[0] * 2)
    wider = measure(np.eye(10)[1] * 2)
    long_legs = measure(np.eye(10)[2] * 2)
    long_arms = measure(np.eye(10)[3] * 2)
    assert taller["height"] > base["height"] * 1.08
    assert wider["waist"] > base["waist"] * 1.15 and abs(wider["height"] - base["height"]) < 1e-3
    assert long_legs["leg"] > base["leg"] * 1.12 and abs(long_legs["arm"] - base["arm"]) < 1e-4
    assert long_arms["arm"] > base["arm"] * 1.12 and abs(long_arms["leg"] - base["leg"]) < 1e-4


def test_extra_joints_land_on_landmarks(body_file):
    import smplx

    output = smplx.create(str(body_file), model_type="smplh", ext="npz", use_pca=False, flat_hand_mean=True)()
    extra = output.joints[0, 52:].detach().numpy()  # nose, eyes, ears, toes, heels, fingertips (smplx order)
    joints = rest_joint_positions()
    nose = extra[0]
    assert nose[2] > joints[JOINT_INDEX["head"], 2] + 0.05  # in front of the face
    assert np.linalg.norm(extra[:5] - joints[JOINT_INDEX["head"]], axis=1).max() < 0.16
    left_big_toe, left_heel = extra[5], extra[7]
    assert left_big_toe[2] > left_heel[2] + 0.15


def test_unreadable_body_file_is_reported(tmp_path):
    from dimo_engine.errors import InputError

    with pytest.raises(InputError, match="not found"):
        load_body_model(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    with pytest.raises(InputError, match="missing"):
        load_body_model(tmp_path / "other.npz")


def test_default_path_is_generated_into_the_cache(tmp_path, monkeypatch):
    from dimo_engine.body import default_body_model_path

    monkeypatch.setenv("DIMO_CACHE", str(tmp_path))
    path = default_body_model_path()
    assert path.is_file() and path.is_relative_to(tmp_path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_make_body_cli(tmp_path):
    from dimo_engine.cli.main import main

    out = tmp_path / "model.npz"
    assert main(["make-body", "--out", str(out)]) == 0
    assert load_body_model(out).num_vertices >= 6890
    assert main(["make-body", "--out", str(tmp_path / "model.obj")]) == 2
