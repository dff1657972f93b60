"""The clip dataset reader: loads what the format promises and names what is wrong."""

import json
import shutil

import numpy as np
import pytest

from dimo_engine.clips import ClipDataset, find_clip_problems, load_clip, validate_clip
from dimo_engine.errors import InputError
from tests.fixtures_clips import write_dataset


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("clips"), num_clips=2, num_frames=5, size=32)


def test_load_clip_reads_views_frames_motion_and_annotations(dataset_root):
    clip = load_clip(dataset_root / "train" / "clip_000001")
    assert clip.clip_id == "train/clip_000001" and clip.num_frames == 5
    assert clip.driving_view.name == "driving"
    assert {v.name for v in clip.views_of_kind("static")} == {"static_az045_el10", "static_az180_el00"}
    orbit = clip.views["moving_orbit"]
    frames = orbit.frames([0, 4])
    assert frames.dtype == np.uint8 and frames.shape == (2, 32, 32, 4)
    assert orbit.camera.num_frames == 5
    # an orbit moves the camera centre; a static view keeps it
    assert not np.allclose(orbit.camera.world_to_camera[0], orbit.camera.world_to_camera[-1])
    static = clip.views["static_az045_el10"].camera.world_to_camera
    assert np.allclose(static[0], static[-1])
    assert clip.motion["body_pose"].shape == (5, 21, 3)
    assert orbit.annotations["hand_boxes"].shape == (5, 2, 4)
    # alpha is the person mask: some pixels are the person, most are not
    assert 0 < (frames[..., 3] > 0).mean() < 0.9


def test_dataset_lists_complete_clips_only(dataset_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(dataset_root, root)
    (root / "train" / ".clip_000002.partial").mkdir()
    dataset = ClipDataset(root, "train")
    assert len(dataset) == 2
    assert [clip.clip_id for clip in dataset] == ["train/clip_000000", "train/clip_000001"]
    with pytest.raises(InputError, match="holds no complete clips"):
        ClipDataset(root, "test")


def test_validation_names_clip_file_and_problem(dataset_root, tmp_path):
    clip_dir = tmp_path / "clip_000000"
    shutil.copytree(dataset_root / "train" / "clip_000000", clip_dir)
    assert find_clip_problems(clip_dir) == []
    (clip_dir / "views" / "moving_orbit" / "frames" / "0003.png").unlink()
    motion = dict(np.load(clip_dir / "motion.npz"))
    motion["body_pose"] = motion["body_pose"][:, :20]
    np.savez(clip_dir / "motion.npz", **motion)
    camera_file = clip_dir / "views" / "driving" / "camera.json"
    camera = json.loads(camera_file.read_text())
    camera["frames"][2]["world_to_camera"][0][0] = float("nan")
    camera_file.write_text(json.dumps(camera))
    problems = find_clip_problems(clip_dir)
    assert len(problems) == 3, problems
    assert any("moving_orbit" in p and "4 PNG frames" in p for p in problems)
    assert any("motion.npz" in p and "'body_pose'" in p and "(5, 21, 3)" in p for p in problems)
    assert any("camera.json" in p for p in problems)
    assert all(p.startswith("clip train/clip_000000:") for p in problems)
    with pytest.raises(InputError, match="4 PNG frames"):
        validate_clip(clip_dir)


def test_validation_of_a_broken_manifest(tmp_path, dataset_root):
    clip_dir = tmp_path / "clip_000001"
    shutil.copytree(dataset_root / "train" / "clip_000001", clip_dir)
    manifest = json.loads((clip_dir / "manifest.json").read_text())
    manifest["driving_view"] = "nope"
    manifest["views"][1]["kind"] = "sideways"
    (clip_dir / "manifest.json").write_text(json.dumps(manifest))
    problems = find_clip_problems(clip_dir)
    assert any("driving_view 'nope'" in p for p in problems)
    assert any("'sideways'" in p for p in problems)
    (clip_dir / "manifest.json").unlink()
    assert "manifest.json is missing" in find_clip_problems(clip_dir)[0]
