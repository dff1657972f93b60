"""The synthetic clip renderer: exact skinning, a tiny headless render checked against its own
annotations and cameras, resume after an interrupted render, shards, the scene-rig path and the
contact sheet."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import roma
import torch

from blender_addon.core.annotations import PERSON_ALPHA_THRESHOLD
from dimo_engine.cli.main import main
from dimo_engine.clip_plan import RenderSettings, parse_shard, shard_indices
from dimo_engine.errors import InputError

RENDER_ARGS = ["--views", "2", "--frames", "4", "--fps", "12", "--resolution", "64", "--engine", "workbench",
               "--samples", "8", "--seed", "3"]


def _forward_kinematics(pose, rest_joints, parents, transl):
    """Reference SMPL chain: global joint positions (J,3) and skinning transforms (J,4,4)."""
    transforms = []
    for joint, parent in enumerate(parents):
        local = np.eye(4)
        local[:3, :3] = roma.rotvec_to_rotmat(torch.as_tensor(pose[joint], dtype=torch.float64)).numpy()
        local[:3, 3] = rest_joints[joint] - (rest_joints[parent] if parent >= 0 else 0.0)
        transforms.append(local if parent < 0 else transforms[parent] @ local)
    transforms = np.stack(transforms)
    skinning = transforms.copy()
    skinning[:, :3, 3] -= np.einsum("jab,jb->ja", transforms[:, :3, :3], rest_joints)
    skinning[:, :3, 3] += transl
    return transforms[:, :3, 3] + transl, skinning


def test_shards_partition_the_clips_without_overlap():
    for num_clips in (1, 7, 12):
        for num_shards in (1, 2, 3, 5):
            parts = [shard_indices(num_clips, i, num_shards) for i in range(num_shards)]
            flat = [index for part in parts for index in part]
            assert sorted(flat) == list(range(num_clips))
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "-1/2", "a/b", "1/0"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_bad_settings_name_the_option():
    with pytest.raises(InputError, match="--engine"):
        RenderSettings(engine="eevee").validate()
    with pytest.raises(InputError, match="--resolution"):
        RenderSettings(resolution=4).validate()


def test_armature_pose_reproduces_the_body_models_joints():
    from dimo_engine.body import SMPLH_PARENTS, MotionSequence, load_body_model
    from dimo_engine.clip_plan import armature_pose

    body_model = load_body_model()
    rng = np.random.default_rng(0)
    frames = 3
    motion = MotionSequence(
        family="test", seed=0, fps=12.0, global_orient=rng.normal(size=(frames, 3)) * 0.5,
        body_pose=rng.normal(size=(frames, 21, 3)) * 0.3, left_hand_pose=rng.normal(size=(frames, 15, 3)) * 0.3,
        right_hand_pose=rng.normal(size=(frames, 15, 3)) * 0.3, transl=rng.normal(size=(frames, 3)),
        betas=rng.normal(size=10).astype(np.float32),
    )
    joints, _ = body_model.forward(motion)
    pose = armature_pose(body_model, motion)
    rest_joints = body_model.rest_joints(motion.betas)
    for frame in range(frames):
        expected, _ = _forward_kinematics(pose[frame], rest_joints, SMPLH_PARENTS, motion.transl[frame])
        np.testing.assert_allclose(joints[frame], expected, atol=2e-5)


@pytest.mark.blender
def test_blender_armature_deform_equals_linear_blend_skinning(blender_scene):
    import bpy

    from blender_addon.clip_renderer.character import build_character, key_pose

    rng = np.random.default_rng(1)
    parents = np.array([-1, 0, 1, 1, 3])
    rest_joints = rng.normal(size=(5, 3))
    vertices = rng.normal(size=(40, 3))
    weights = rng.random((40, 5)) ** 3
    weights /= weights.sum(axis=1, keepdims=True)
    names = [f"joint{k}" for k in range(5)]
    armature_obj, mesh_obj = build_character("Test", vertices, [[0, 1, 2], [3, 4, 5, 6]], weights, rest_joints, parents, names)
    pose = rng.normal(size=(2, 5, 3))
    transl = rng.normal(size=(2, 3))
    key_pose(armature_obj, names, pose, transl, [0, 1])
    for frame in (0, 1):
        blender_scene.frame_set(frame)
        evaluated = mesh_obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
        blender = np.array([v.co for v in evaluated.vertices])
        _, skinning = _forward_kinematics(pose[frame], rest_joints, parents, transl[frame])
        homogeneous = np.concatenate([vertices, np.ones((40, 1))], axis=1)
        expected = np.einsum("vj,jab,vb->va", weights, skinning, homogeneous)[:, :3]
        np.testing.assert_allclose(blender, expected, atol=1e-5)


@pytest.fixture
def blender_scene():
    """A fresh scene made active, removed afterwards with everything the test made, so other tests'
    Blender state is left alone."""
    import bpy

    kinds = ("objects", "meshes", "armatures", "actions", "materials", "cameras", "lights", "images")
    before = {kind: set(getattr(bpy.data, kind)) for kind in kinds}
    previous = bpy.context.window.scene
    scene = bpy.data.scenes.new("clip renderer test")
    bpy.context.window.scene = scene
    yield scene
    bpy.context.window.scene = previous
    bpy.data.scenes.remove(scene)
    for kind in kinds:
        collection = getattr(bpy.data, kind)
        for block in [block for block in collection if block not in before[kind]]:
            collection.remove(block)


def _render(out, *extra):
    return main(["render-clips", "--clips", "2", *RENDER_ARGS, *extra, "--out", str(out)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("clips") / "uninterrupted"
    assert _render(out) == 0
    return out


@pytest.mark.blender
@pytest.mark.slow
def test_tiny_render_is_complete_and_consistent(dataset):
    import torch

    from dimo_engine.camera import project_points
    from dimo_engine.clips import ClipDataset

    info = json.loads((dataset / "dataset.json").read_text())
    assert info["format"] == "dimo-clip-dataset" and info["resolution"] == 64 and info["splits"]["train"]["clips"] == 2
    clips = ClipDataset(dataset, "train")  # validates every clip
    assert len(clips) == 2
    assert not list((dataset / "train").glob(".*"))  # no partial folders, no plan left behind
    assert not [p for p in dataset.iterdir() if p.name.startswith(".")]
    for clip in clips:
        assert clip.num_frames == 4 and clip.width == clip.height == 64
        assert [v.kind for v in clip.views.values()] == ["driving", "static"]
        assert clip.motion["joints"].shape == (4, 52, 3) and clip.manifest["motion"]["family"]
        hits = []
        for view in clip.views.values():
            frames = view.frames()
            assert frames.shape == (4, 64, 64, 4)
            mask = frames[..., 3]
            assert (mask > 127).sum(axis=(1, 2)).min() > 20  # the person is there on every frame
            border = np.concatenate([mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]], axis=1)
            assert border.max() == 0  # and inside the frame
            assert len(np.unique(frames[..., :3].reshape(-1, 3), axis=0)) > 50  # background rendered too
            annotations = view.annotations
            uv, depth = project_points(torch.as_tensor(clip.motion["joints"], dtype=torch.float64),
                                       torch.as_tensor(view.camera.K), torch.as_tensor(view.camera.world_to_camera))
            np.testing.assert_allclose(annotations["joints2d"], uv.numpy(), atol=1e-3)
            inside = (uv[..., 0] >= 0) & (uv[..., 0] < 64) & (uv[..., 1] >= 0) & (uv[..., 1] < 64) & (depth > 0)
            np.testing.assert_array_equal(annotations["joints_visible"], inside.numpy())
            for frame in range(4):
                for joint in np.nonzero(annotations["joints_visible"][frame])[0]:
                    u, v = annotations["joints2d"][frame, joint].astype(int)  # pixel (u, v) covers [u, u+1)
                    hits.append(mask[frame, v, u] > 0)
                for side, wrist in enumerate((20, 21)):
                    x0, y0, x1, y1 = annotations["hand_boxes"][frame, side]
                    u, v = annotations["joints2d"][frame, wrist]
                    assert x0 < u < x1 and y0 < v < y1
                x0, y0, x1, y1 = annotations["person_box"][frame]
                ys, xs = np.nonzero(mask[frame] > PERSON_ALPHA_THRESHOLD)
                assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert np.mean(hits) >= 0.95, np.mean(hits)


def _dataset_contents(root: Path) -> dict:
    contents = {}
    for path in sorted(root.rglob("*")):
        if path.is_dir():
            continue
        key = str(path.relative_to(root))
        if path.suffix == ".npz":  # zip timestamps differ between runs; compare the arrays
            with np.load(path) as data:
                contents[key] = {name: data[name].tolist() for name in data.files}
        elif path.name == "dataset.json":
            contents[key] = json.loads(path.read_text())
        else:
            contents[key] = path.read_bytes()
    return contents


@pytest.mark.blender
@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_dataset(dataset, tmp_path):
    out = tmp_path / "resumed"
    assert _render(out, "--shard", "1/2") == 0  # clip 1 only
    assert sorted(p.name for p in (out / "train").iterdir()) == ["clip_000001"]
    before = (out / "train" / "clip_000001" / "manifest.json").stat().st_mtime_ns
    # What a render killed half-way through clip 0 leaves behind.
    partial = out / "train" / ".clip_000000.partial"
    (partial / "views" / "driving" / "frames").mkdir(parents=True)
    (partial / "views" / "driving" / "frames" / "0000.png").write_bytes(b"half a png")
    assert _render(out) == 0
    assert (out / "train" / "clip_000001" / "manifest.json").stat().st_mtime_ns == before  # complete clip skipped
    assert _dataset_contents(out) == _dataset_contents(dataset)
    # Resuming with other settings is refused instead of mixing two datasets.
    assert main(["render-clips", "--clips", "2", *RENDER_ARGS[:-2], "--seed", "4", "--out", str(out)]) == 2


@pytest.mark.blender
@pytest.mark.slow
def test_resume_after_killing_the_render_mid_clip(dataset, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "dimo_engine.cli.main", "render-clips", "--clips", "2", *RENDER_ARGS, "--out", str(out)]
    # A session of its own, so the kill reaches the Blender worker too, as a Ctrl-C or a lost machine would.
    run = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(out.glob("train/.clip_*.partial/views/*/frames/*.png")):
        assert run.poll() is None and time.monotonic() < deadline, "the render ended before it could be killed"
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    assert list(out.glob("train/.clip_*.partial"))  # killed mid-clip
    assert _render(out) == 0
    assert _dataset_contents(out) == _dataset_contents(dataset)


@pytest.mark.blender
def test_contact_sheet_shows_views_by_frames(dataset, tmp_path):
    from PIL import Image

    from dimo_engine.cli.contact_sheet import contact_sheet
    from dimo_engine.clips import load_clip

    clip_path = dataset / "train" / "clip_000000"
    sheet_path = tmp_path / "sheet.png"
    assert main(["contact-sheet", str(clip_path), "--out", str(sheet_path), "--no-joints"]) == 0
    with Image.open(sheet_path) as image:
        sheet = np.asarray(image.convert("RGB"))
    clip = load_clip(clip_path)
    label = sheet.shape[1] - 4 * 64
    assert sheet.shape[0] == 2 * 64 and label > 0
    for row, view in enumerate(clip.views.values()):
        frames = view.frames()
        for column in range(4):
            np.testing.assert_array_equal(sheet[row * 64:(row + 1) * 64, label + column * 64:label + (column + 1) * 64], frames[column][..., :3])
    with_joints = np.asarray(contact_sheet(clip, 4, draw_joints=True).convert("RGB"))
    assert (with_joints != sheet).any()
    assert main(["contact-sheet", str(clip_path), "--out", str(tmp_path / "sheet.jpg")]) == 2
    assert main(["contact-sheet", str(tmp_path), "--out", str(sheet_path)]) == 2


@pytest.mark.blender
def test_scene_rig_clips_recover_smplh_parameters_and_other_rigs_write_bone_joints(tmp_path, blender_scene):
    import bpy

    from blender_addon.clip_renderer.character import build_character, key_pose
    from blender_addon.clip_renderer.scene_clips import iter_render_scene_clips
    from dimo_engine.body import SMPLH_JOINT_NAMES, SMPLH_PARENTS, load_body_model
    from dimo_engine.clips import load_clip

    body_model = load_body_model()
    rng = np.random.default_rng(2)
    betas = rng.normal(size=10).astype(np.float32) * 0.5
    pose = rng.normal(size=(3, 52, 3)) * 0.2
    pose[:, 0] = [np.pi / 2, 0.0, 0.0]  # SMPL canonical (Y up) -> character frame (Z up)
    transl = np.array([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.2, 0.0, 1.0]])
    scene = blender_scene
    armature_obj, _ = build_character("Project Rig", body_model.rest_vertices(betas), body_model.faces, body_model.weights,
                                      body_model.rest_joints(betas), SMPLH_PARENTS, list(SMPLH_JOINT_NAMES), betas=betas)
    key_pose(armature_obj, list(SMPLH_JOINT_NAMES), pose, transl, [1, 2, 3])
    scene.frame_start, scene.frame_end = 1, 3
    steps = list(iter_render_scene_clips(scene, armature_obj, str(tmp_path / "scene"), num_views=2, resolution=32))
    assert steps[-1] == (6, 6) and scene.camera is None  # scene restored, rig cameras removed
    clip = load_clip(tmp_path / "scene" / "train" / "clip_000000")
    np.testing.assert_allclose(clip.motion["body_pose"], pose[:, 1:22], atol=1e-5)
    np.testing.assert_allclose(clip.motion["right_hand_pose"], pose[:, 37:52], atol=1e-5)
    np.testing.assert_allclose(clip.motion["betas"], betas, atol=1e-6)
    from dimo_engine.body import MotionSequence

    motion = MotionSequence("scene", 0, 12.0, clip.motion["global_orient"], clip.motion["body_pose"], clip.motion["left_hand_pose"],
                            clip.motion["right_hand_pose"], clip.motion["transl"], clip.motion["betas"])
    np.testing.assert_allclose(body_model.forward(motion)[0], clip.motion["joints"], atol=1e-4)

    # Any other rig: bone heads by name; cancelling half-way leaves no partial clip.
    for obj in list(scene.objects):
        bpy.data.objects.remove(obj)
    bpy.ops.object.armature_add()
    rig = bpy.context.active_object
    bpy.ops.mesh.primitive_cube_add(size=0.6, location=(0.0, 0.0, 1.0))
    cube = bpy.context.active_object
    cube.modifiers.new("Armature", "ARMATURE").object = rig
    cube.vertex_groups.new(name="Bone").add(list(range(8)), 1.0, "REPLACE")
    scene.frame_start, scene.frame_end = 1, 2
    out = tmp_path / "other"
    steps = iter_render_scene_clips(scene, rig, str(out), num_views=2, resolution=32)
    next(steps)
    steps.close()
    assert list((out / "train").iterdir()) == []
    for _ in iter_render_scene_clips(scene, rig, str(out), num_views=2, resolution=32):
        pass
    clip = load_clip(out / "train" / "clip_000000")
    assert list(clip.motion["joint_names"]) == ["Bone"] and "global_orient" not in clip.motion
    assert clip.views["driving"].frames()[..., 3].max() == 255
    with pytest.raises(ValueError, match="armature"):
        next(iter_render_scene_clips(scene, cube, str(out)))

    # The add-on operator renders the same way from its settings (scripts run it without a window).
    from addon_scene import enable_addon

    enable_addon()
    settings = scene.dimo.render_clips
    settings.output_dir, settings.views, settings.resolution, settings.seed = str(out), 2, 32, 1
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.dimo.render_training_clips("EXEC_DEFAULT") == {"FINISHED"}
    load_clip(out / "train" / "clip_000001")


def test_shards_writing_the_shared_dataset_record_at_once_do_not_collide(tmp_path):
    import json
    import subprocess
    import sys

    path = tmp_path / "dataset.json"
    writes = (
        "from blender_addon.core.atomic_io import write_json_atomic\n"
        f"for attempt in range(300):\n    write_json_atomic({str(path)!r}, {{'format': 'dimo-clip-dataset', 'attempt': attempt}})\n"
    )
    shards = [subprocess.Popen([sys.executable, "-c", writes]) for _ in range(2)]
    assert [shard.wait(120) for shard in shards] == [0, 0]
    assert json.loads(path.read_text())["format"] == "dimo-clip-dataset"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.json"]
