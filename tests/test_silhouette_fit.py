"""The driving pose fitted to the driving video's silhouettes (`dimo_engine.silhouette_fit`)."""

import numpy as np
import torch

from dimo_engine.character_layer import capsule_coverage, proxy_capsules
from dimo_engine.silhouette_fit import fit_pose_to_silhouettes, orthographic_driving_camera, person_cells

FRAME = 128
SCALE = 55.0  # px per metre of the test's orthographic driving camera (no pitch)
CENTRE = (64.0, 70.0)
RIGHT_ELBOW, RIGHT_WRIST = 19, 21


def arms_out_pose(frames: int = 3) -> torch.Tensor:
    """A root-relative view-frame pose `(frames, 22, 3)` (right, forward, up): a body seen from the front, its arms
    held out sideways and lowered a little more each frame."""
    from dimo_engine.character_layer import BODY_PARENTS

    offsets = {1: (0.1, 0, -0.05), 2: (-0.1, 0, -0.05), 3: (0, 0, 0.12), 4: (0, 0, -0.42), 5: (0, 0, -0.42),
               6: (0, 0, 0.14), 7: (0, 0, -0.42), 8: (0, 0, -0.42), 9: (0, 0, 0.06), 10: (0, -0.1, -0.05),
               11: (0, -0.1, -0.05), 12: (0, 0, 0.2), 13: (0.08, 0, 0.12), 14: (-0.08, 0, 0.12), 15: (0, 0, 0.1),
               16: (0.12, 0, 0.02), 17: (-0.12, 0, 0.02), 18: (0.27, 0, 0), 19: (-0.27, 0, 0), 20: (0.25, 0, 0),
               21: (-0.25, 0, 0)}
    poses = []
    for t in range(frames):
        joints = torch.zeros(22, 3)
        for joint in range(1, 22):
            offset = torch.tensor(offsets[joint], dtype=torch.float32)
            if joint in (18, 19, 20, 21):  # the arms lowered by 10 degrees a frame
                angle = np.radians(10.0 * t) * (1 if joint % 2 == 0 else -1)
                offset = torch.tensor([offset[0] * np.cos(angle), 0.0, -abs(offset[0]) * np.sin(abs(angle))])
            joints[joint] = joints[BODY_PARENTS[joint]] + offset
        poses.append(joints)
    return torch.stack(poses)


def image_of(pose: torch.Tensor) -> torch.Tensor:
    """Frame pixels `(T, 22, 2)` of a view-frame pose by the test's orthographic camera."""
    return torch.stack([pose[..., 0] * SCALE + CENTRE[0], -pose[..., 2] * SCALE + CENTRE[1]], dim=-1)


def silhouettes_of(pose: torch.Tensor) -> np.ndarray:
    """The person's alpha, uint8 `(T, FRAME, FRAME)`, that the body proxy around `pose` draws by the same camera:
    the proxy drawn by a pinhole camera far away (100 m, with a focal that keeps SCALE px per metre) is orthographic."""
    distance, frames = 100.0, pose.shape[0]
    in_front = torch.stack([pose[..., 0], pose[..., 1] + distance, pose[..., 2]], dim=-1)  # camera at the origin
    K = torch.tensor([[SCALE * distance, 0, CENTRE[0]], [0, SCALE * distance, CENTRE[1]], [0, 0, 1.0]])
    world_to_camera = torch.tensor([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])  # y ahead, z up
    whole = torch.tensor([[0.0, 0.0, FRAME, FRAME]]).expand(frames, 4)
    coverage = capsule_coverage(*proxy_capsules(in_front, K.expand(frames, 3, 3),
                                                world_to_camera.expand(frames, 4, 4), whole, FRAME), FRAME)
    return ((coverage[:, 0] > 0.5) * 255).numpy().astype(np.uint8)


def test_the_driving_camera_is_found_from_the_2d_joints():
    pose = arms_out_pose()
    right, up, scale, offset = orthographic_driving_camera(pose, image_of(pose))
    assert torch.allclose(up, torch.tensor([0.0, 0.0, 1.0]), atol=1e-6)  # no pitch
    assert torch.allclose(scale, torch.full((3,), SCALE), rtol=1e-4)
    assert torch.allclose(offset, torch.tensor(CENTRE).expand(3, 2), atol=1e-3)


def test_the_fit_brings_a_misread_arm_back_onto_the_silhouette_and_keeps_its_depth():
    truth = arms_out_pose()
    person = person_cells(silhouettes_of(truth), clip_box=(0, 0, FRAME, FRAME))
    read = truth.clone()
    read[:, [RIGHT_ELBOW, RIGHT_WRIST], 2] += torch.tensor([0.06, 0.12])  # the arm read too high,
    read[:, [RIGHT_ELBOW, RIGHT_WRIST], 1] += 0.05  # and too far back, which no silhouette shows
    joints_px = image_of(read)  # the 2D joints misread alike: only the silhouette says where the arm is
    fitted = fit_pose_to_silhouettes(read, joints_px, *person)
    before = (read - truth)[:, RIGHT_WRIST, 2].abs().mean()
    after = (fitted - truth)[:, RIGHT_WRIST, 2].abs().mean()
    assert after < 0.4 * before
    assert torch.equal(fitted[..., 1], read[..., 1])  # depth is not in a silhouette: left as read
    # the rest of the body, read right, stays where it was
    others = [joint for joint in range(22) if joint not in (RIGHT_ELBOW, RIGHT_WRIST)]
    assert float((fitted - read)[:, others].norm(dim=-1).max()) < 0.03


def test_the_fit_leaves_a_pose_that_fits_its_silhouettes_where_it_is():
    truth = arms_out_pose()
    person = person_cells(silhouettes_of(truth), clip_box=(0, 0, FRAME, FRAME))
    fitted = fit_pose_to_silhouettes(truth, image_of(truth), *person)
    assert float((fitted - truth).norm(dim=-1).max()) < 0.03


def test_each_frame_is_cut_around_its_own_silhouette_and_a_frame_without_the_person_takes_the_clips_box():
    alpha = np.zeros((3, 64, 128), np.uint8)
    alpha[0, 20:40, 5:15] = 255  # the person on the left,
    alpha[1, 20:40, 100:110] = 255  # then on the right,
    clip_box = (0, -32, 128, 96)  # then nowhere
    person, boxes = person_cells(alpha, clip_box)
    assert person.shape == (3, 48, 48) and boxes.shape == (3, 4)
    assert float(boxes[0, 2]) < 64 < float(boxes[1, 0])
    assert tuple(boxes[2].tolist()) == clip_box and float(person[2].max()) == 0.0
    assert float(person[0].mean()) > 0.1  # the body fills its own square, not a sliver of the clip's
