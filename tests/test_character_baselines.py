"""The character pipeline's benchmark: its explicit-control baselines (motion_signal pose2d / noisy3d), the four
ablations as settings of the training stages, and the comparison's intervals and scoring end to end."""

import json

import numpy as np
import pytest
import torch

from dimo_engine.errors import InputError
from dimo_engine.pipelines import create_character_pipeline, load_pipeline, save_pipeline
from tests.test_character_model import _config, clips, orbit, standing_body  # noqa: F401 (clips is a fixture)


def _baseline_batch(clips_root, size: int = 4, seed: int = 0) -> dict:
    from training.character_data import CharacterExamples, build_character_cache

    cache = build_character_cache(clips_root, "train", progress=False)
    return CharacterExamples(cache).batch(np.random.default_rng(seed), size)


# ---- the baselines' motion -------------------------------------------------------------------------------


def test_pose2d_maps_stay_put_when_only_the_target_camera_moves_while_noisy3d_and_dimo_maps_follow_it():
    from dimo_engine.character_layer import view_locked_points

    body = standing_body()
    near, far = orbit(3, sweep_deg=0.0), orbit(3, sweep_deg=120.0)  # the same first camera, then others
    maps = {}
    for signal in ("pose2d", "noisy3d"):
        pipe = create_character_pipeline(seed=0, body_proxy=True, motion_signal=signal)
        points = view_locked_points(body[:, [0, 2]] * torch.tensor([40.0, -40.0]) + torch.tensor([64.0, 100.0]), 128, 128) if signal == "pose2d" else body
        motion = pipe.baseline_motion(points[None].expand(3, 22, 3))
        assert motion.body.shape == (1, 3, 22, 19) and motion.hands.shape == (1, 3, 2, 19)
        maps[signal] = [pipe.motion_maps(motion, camera) for camera in (near, far)]
    (pose_near, pose_boxes), (pose_far, pose_far_boxes) = maps["pose2d"]
    assert torch.equal(pose_near, pose_far) and torch.equal(pose_boxes, pose_far_boxes)
    assert float(pose_near[:, -3].abs().max()) == 0.0  # no depth in a 2D pose
    assert float(pose_near[:, -1].max()) > 0.9  # the 2D proxy covers the body
    (noisy_near, noisy_boxes), (noisy_far, noisy_far_boxes) = maps["noisy3d"]
    assert not torch.allclose(noisy_boxes[1:], noisy_far_boxes[1:])
    assert (noisy_near[1:] - noisy_far[1:]).abs().max() > 0.1


def test_the_view_locked_proxy_draws_the_body_proxy_of_a_body_seen_square_on_from_afar():
    from blender_addon.core.camera_rigs import look_at
    from dimo_engine.body.kinematics import procedural_rest_joints
    from dimo_engine.camera import project_points
    from dimo_engine.character_layer import body_proxy, square_boxes_around, view_locked_proxy

    rest = torch.as_tensor(procedural_rest_joints(None)[:22], dtype=torch.float32)  # T pose, Y up, 1.5 m of joints
    body = torch.stack([rest[:, 0], rest[:, 2], rest[:, 1] + 0.9], -1)[None]  # character frame: Z up, facing -Y
    areas = []
    for pixels_per_metre in (30.0, 60.0):  # a camera 50 m away: no perspective, this many pixels a metre
        K = torch.tensor([[pixels_per_metre * 50, 0, 64], [0, pixels_per_metre * 50, 64], [0, 0, 1.0]])[None]
        world_to_camera = torch.tensor(look_at(np.array([0.0, -50.0, 0.9]), (0.0, 0.0, 0.9)), dtype=torch.float32)[None]
        pixels, _ = project_points(body, K, world_to_camera)
        boxes = square_boxes_around(pixels)
        flat, seen = view_locked_proxy(pixels, boxes, 64) > 0.5, body_proxy(body, K, world_to_camera, boxes, 64) > 0.5
        assert float((flat & seen).sum() / (flat | seen).sum()) > 0.9  # the 2D height gives the body's scale
        areas.append(float(flat.sum()))
    assert areas[0] == pytest.approx(areas[1], rel=0.1)  # in its own box the body looks the same at any size


def test_noisy3d_anchors_err_by_the_documented_noise_and_are_fixed_by_the_seed(clips):
    from training.train_character import noisy_joints

    batch = _baseline_batch(clips, size=6)
    draws = [noisy_joints(batch, torch.Generator().manual_seed(seed)) for seed in (3, 3, 4)]
    torch.testing.assert_close(draws[0], draws[1])
    assert not torch.allclose(draws[0], draws[2])
    truth = batch["driving_joints"]
    error = (draws[0] - truth).norm(dim=-1)  # documented sigmas: 15 cm global depth, 4 cm per joint, 8 % limbs, 1.5 cm
    assert 0.02 < float(error.mean()) < 0.4
    relative = (draws[0] - draws[0][:, :1]) - (truth - truth[:, :1])  # without the global depth error
    assert 0.01 < float(relative.norm(dim=-1).mean()) < 0.2


def test_the_pose2d_signal_is_the_driving_views_annotated_2d_joints_view_locked(clips):
    from dimo_engine.character_layer import view_locked_pixels
    from dimo_engine.clips import ClipDataset
    from training.character_data import CharacterExamples, build_character_cache
    from training.train_character import CropAugmentation, training_motion

    examples = CharacterExamples(build_character_cache(clips, "train", progress=False))
    clip = ClipDataset(clips, "train")[1]
    for index, view in enumerate(clip.views.values()):  # the cache keeps the clip's views in order
        locked = examples.driving_inputs(1, index, 3)["view_locked_joints"]
        torch.testing.assert_close(view_locked_pixels(locked, clip.height, clip.width),
                                   torch.from_numpy(view.annotations["joints2d"][3, :22]).float(), atol=1e-3, rtol=0)
    batch = _baseline_batch(clips)
    pipe = create_character_pipeline(seed=0, motion_signal="pose2d")
    motion = training_motion(pipe, batch, "pose2d", torch.Generator().manual_seed(0), CropAugmentation(0.25))
    assert motion["anchors"].shape == (4, 24, 3) and motion["features"].shape == (4, 24, 16)
    assert torch.equal(motion["anchors"][:, :22], batch["driving_view_locked_joints"])
    torch.testing.assert_close(motion["features"][0], pipe.token_embedding.features)


# ---- the baselines' pipelines ----------------------------------------------------------------------------


def test_a_baseline_pipeline_keeps_its_signal_through_a_folder_refuses_a_video_and_starts_as_dimos_generator(tmp_path):
    dimo = create_character_pipeline(seed=0, body_proxy=True)
    baseline = create_character_pipeline(seed=0, body_proxy=True, motion_signal="noisy3d")
    for key, value in dimo.generator.state_dict().items():  # only the motion signal differs
        assert torch.equal(baseline.generator.state_dict()[key], value), key
    assert baseline.generator.config.in_channels == dimo.generator.config.in_channels
    loaded = load_pipeline(save_pipeline(baseline, tmp_path / "noisy3d"), device="cpu")
    assert loaded.config.motion_signal == "noisy3d"
    torch.testing.assert_close(loaded.token_embedding.features, baseline.token_embedding.features)
    with pytest.raises(InputError, match="noisy3d baseline.*true 3D joints.*compare_character"):
        loaded.encode_driving_clip(np.zeros((4, 32, 32, 4), np.uint8), fps=12.0)
    assert load_pipeline(save_pipeline(dimo, tmp_path / "dimo"), device="cpu").config.motion_signal == "dimo"
    with pytest.raises(InputError, match="encode_driving_clip"):
        dimo.baseline_motion(standing_body()[None])
    with pytest.raises(InputError, match="motion_signal 'heatmaps'"):
        create_character_pipeline(motion_signal="heatmaps")


@pytest.mark.parametrize("signal", ["pose2d", "noisy3d"])
def test_a_baselines_joint_stage_trains_the_generator_and_its_token_features_alone_and_exports(clips, tmp_path, signal):
    from training.train_character import train_stage

    last = train_stage(_config(clips, tmp_path / signal, motion_signal=signal, joint_steps=2, body_proxy=True), "joint")
    assert last["step"] == 2 and "aux" not in last  # no encoders, so no geometric supervision
    trained = torch.load(tmp_path / signal / "joint_checkpoint.pt", weights_only=False)["models"]
    fresh = create_character_pipeline(seed=0, body_proxy=True, motion_signal=signal)
    assert not torch.equal(trained["token_embedding"]["features"], fresh.token_embedding.features)
    for key, value in fresh.body_encoder.state_dict().items():  # unused, untouched
        assert torch.equal(trained["body_encoder"][key], value), key
    assert load_pipeline(tmp_path / signal / "pipeline", device="cpu").config.motion_signal == signal
    with pytest.raises(InputError, match="no motion encoders to train"):
        train_stage(_config(clips, tmp_path / "encoders", motion_signal=signal), "encoders")
    with pytest.raises(InputError, match="trained with motion_signal=.*not dimo"):
        train_stage(_config(clips, tmp_path / "other", joint_steps=1, init_from=tmp_path / signal / "pipeline"), "joint")


# ---- the ablations ---------------------------------------------------------------------------------------


def test_no_perspective_augmentation_leaves_the_warp_out():
    import kornia.augmentation as K

    from training.train_character import CropAugmentation

    def kinds(augmentation):
        return [type(step) for step in augmentation.geometry.children()]

    assert K.RandomPerspective in kinds(CropAugmentation(0.25))
    assert K.RandomPerspective not in kinds(CropAugmentation(0.0)) and K.RandomAffine in kinds(CropAugmentation(0.0))


def test_same_view_only_pairs_supervise_every_example_from_its_driving_camera(clips):
    from training.character_data import CharacterExamples, build_character_cache
    from training.train_character import pair_ratios

    config = _config(clips, "unused", same_view_ratio=1, cross_view_ratio=0, moving_camera_ratio=0)
    examples = CharacterExamples(build_character_cache(clips, "train", progress=False), pair_ratios(config))
    rng = np.random.default_rng(0)
    pairs = [examples.choose(rng) for _ in range(40)]
    assert {p.kind for p in pairs} == {"same_view"} and all(p.target == p.driving for p in pairs)
    default = CharacterExamples(build_character_cache(clips, "train", progress=False), pair_ratios(_config(clips, "unused")))
    assert any(p.target != p.driving for p in (default.choose(rng) for _ in range(40)))
    with pytest.raises(InputError, match="no pair can be drawn"):
        pair_ratios(_config(clips, "unused", same_view_ratio=0, cross_view_ratio=0, moving_camera_ratio=0))


def test_geometric_supervision_is_annealed_to_zero_or_held_for_the_whole_stage(clips):
    from training.train_character import geometric_weight

    annealed = _config(clips, "unused", aux_hold_steps=100, aux_end_step=400)
    held = _config(clips, "unused", aux_hold_steps=100, aux_end_step=400, aux_annealed=False)
    assert geometric_weight(50, annealed, "joint") == 1.0 and geometric_weight(400, annealed, "joint") == 0.0
    assert geometric_weight(250, annealed, "joint") < 1.0
    assert [geometric_weight(step, held, "joint") for step in (0, 250, 400, 2999)] == [1.0] * 4
    assert geometric_weight(0, _config(clips, "unused", motion_signal="pose2d"), "joint") == 0.0


def test_a_joint_stage_that_ends_before_the_supervision_reaches_zero_is_warned_about(clips):
    import warnings

    from training.train_character import warn_if_never_annealed

    with pytest.warns(UserWarning, match="never annealed to 0"):
        warn_if_never_annealed(_config(clips, "unused", joint_steps=1200, aux_end_step=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fine in ({"joint_steps": 1200, "aux_end_step": 1200}, {"joint_steps": 1200, "aux_weight": 0},
                     {"joint_steps": 1200, "aux_annealed": False}, {"joint_steps": 1200, "motion_signal": "noisy3d"}):
            warn_if_never_annealed(_config(clips, "unused", **{"aux_end_step": 2000, **fine}))


def test_no_geometric_supervision_starts_the_joint_stage_from_fresh_encoders_and_refuses_to_guess(clips, tmp_path):
    from training.train_character import train_stage

    with pytest.raises(InputError, match="run the 'encoders' stage first.*fresh_encoders=true"):
        train_stage(_config(clips, tmp_path / "missing", joint_steps=1, aux_weight=0), "joint")
    with pytest.raises(InputError, match="fresh_encoders.*init_from"):
        train_stage(_config(clips, tmp_path / "both", joint_steps=1, fresh_encoders=True, init_from=tmp_path), "joint")
    last = train_stage(_config(clips, tmp_path / "fresh", joint_steps=1, fresh_encoders=True, aux_weight=0,
                               joint_encoder_lr=0, generator_lr=0), "joint")
    assert "aux" not in last
    trained = torch.load(tmp_path / "fresh" / "joint_checkpoint.pt", weights_only=False)["models"]
    for key, value in create_character_pipeline(seed=0).body_encoder.state_dict().items():
        assert torch.equal(trained["body_encoder"][key], value), key  # the random start, no encoder stage


# ---- the comparison --------------------------------------------------------------------------------------


def test_the_bootstrap_interval_holds_the_mean_narrows_with_more_clips_and_is_seeded():
    from training.compare_character import bootstrap_interval, paired_effect

    rng = np.random.default_rng(0)
    few, many = rng.normal(0.6, 0.1, 8), rng.normal(0.6, 0.1, 200)
    mean, low, high = bootstrap_interval(few)
    assert low < mean < high and mean == pytest.approx(few.mean())
    _, low_many, high_many = bootstrap_interval(many)
    assert high_many - low_many < 0.5 * (high - low)
    assert bootstrap_interval(few, seed=1) == bootstrap_interval(few, seed=1) != bootstrap_interval(few, seed=2)
    assert bootstrap_interval([float("nan"), 0.5])[0] == 0.5
    rows = [{"method": m, "clip_id": f"c{c}", "kind": "novel_90", "iou": 0.5 + 0.01 * c + (0.1 if m == "a" else 0)}
            for m in ("a", "b") for c in range(6)]
    effect, low, high = paired_effect(rows, "a", "b", "novel_>=90", "iou")
    assert effect == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)  # paired by clip


def alpha_centre_locator(frames):
    """A stand-in keypoint locator: every joint at the centre of the drawn alpha."""
    rows, cols = np.nonzero((frames[..., 3] > 127).any(0))
    return torch.tensor([cols.mean(), rows.mean()], dtype=torch.float32).expand(frames.shape[0], 22, 2)


def test_a_perfect_layer_scores_perfectly_and_a_shifted_one_loses_iou():
    from training.compare_character import score_target

    truth = np.zeros((3, 32, 32, 4), np.uint8)
    truth[..., :3] = 90
    truth[:, 8:26, 12:20] = (200, 60, 40, 255)
    plates = np.full((3, 32, 32, 3), 90, np.uint8)
    joints = torch.tensor([15.5, 16.5]).expand(3, 22, 2)  # the person's centre
    visible = torch.ones(3, 22, dtype=torch.bool)
    perfect = score_target(truth.astype(np.float32) / 255, truth, plates, joints, visible, joints, alpha_centre_locator)
    assert perfect["iou"] == 1.0 and perfect["plate_iou"] == 1.0 and perfect["psnr"] == 100.0
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-4) and perfect["motion_joint_error_px"] == 0.0
    assert perfect["joint_error_px"] == 0.0  # the locator reads the generated layer
    assert np.isnan(perfect["flicker_ratio"])  # a still person has no flicker to compare with
    shifted = score_target(np.roll(truth, 4, axis=2).astype(np.float32) / 255, truth, plates, joints, visible,
                           joints + 3, alpha_centre_locator)
    assert shifted["iou"] < 0.6 and shifted["plate_iou"] < 0.6 and shifted["motion_joint_error_px"] > 2.9
    assert shifted["joint_error_px"] == pytest.approx(4.0)
    empty = score_target(np.zeros((3, 32, 32, 4), np.float32), truth, plates, joints, visible, joints,
                         alpha_centre_locator)
    assert empty["iou"] == 0.0 and np.isnan(empty["joint_error_px"])  # nothing drawn: no joints to find


def write_comparison_inputs(tmp_path, clips: int, signals: dict[str, str]):
    """A benchmark-layout test folder of `clips` clips, and an untrained character pipeline per name -> signal, each
    in tmp_path / name. -> the test folder."""
    from tests.test_eval import write_benchmark_clip

    data = tmp_path / "bench"
    data.mkdir()
    (data / "dataset.json").write_text(json.dumps({"format": "dimo-clip-dataset", "version": 1, "layout": "benchmark"}))
    for index in range(clips):
        write_benchmark_clip(data, index=index, seed=index)
    for name, signal in signals.items():
        save_pipeline(create_character_pipeline(seed=1, body_proxy=True, motion_signal=signal), tmp_path / name)
    return data


@pytest.mark.slow
def test_the_comparison_scores_dimo_and_both_baselines_per_target_and_writes_tables_sheet_and_videos(tmp_path):
    from training.compare_character import main

    data = write_comparison_inputs(tmp_path, 2, {"dimo": "dimo", "pose2d": "pose2d", "noisy3d": "noisy3d",
                                                  "ablation": "dimo"})
    models = []
    for name in ("dimo", "pose2d", "noisy3d", "ablation"):
        models += ["--model", f"{name}={tmp_path / name}"]
    out = tmp_path / "compare.json"
    assert main([*models, "--test", str(data), "--out", str(out), "--steps", "1", "--threads", "1",
                 "--sheet", str(tmp_path / "sheet.png"), "--videos", str(tmp_path / "videos")]) == 0
    result = json.loads(out.read_text())
    assert {row["method"] for row in result["rows"]} == {"dimo", "pose2d", "noisy3d", "ablation"}
    assert len(result["rows"]) == 4 * 2 * 3  # methods x clips x targets (driving, novel_90, moving)
    mean, low, high = result["summary"]["dimo"]["novel_>=90"]["iou"]
    assert low <= mean <= high and result["summary"]["dimo"]["novel_>=90"]["clips"] == 2
    assert set(result["pose3d"]) == {"dimo", "noisy3d", "ablation"}  # a 2D pose has no 3D joints
    assert "iou" in result["effects"]["ablation"]["driving"]
    assert (tmp_path / "sheet.png").is_file() and len(list((tmp_path / "videos").glob("*.mp4"))) == 4  # 2 clips x 2
    assert main(["--model", "x=" + str(tmp_path / "pose2d"), "--test", str(data), "--reference", "x"]) == 2  # not DiMo


def flat(tree, prefix=""):
    """A nested dict of figures as {"a/b/0": value}, for pytest.approx (which compares one level only)."""
    if isinstance(tree, dict):
        return {key: value for name, child in tree.items() for key, value in flat(child, f"{prefix}{name}/").items()}
    if isinstance(tree, list):
        return {key: value for i, child in enumerate(tree) for key, value in flat(child, f"{prefix}{i}/").items()}
    return {prefix: float(tree)}


@pytest.mark.slow
def test_models_scored_in_separate_runs_merge_into_the_same_report_and_mismatched_runs_are_refused(tmp_path):
    from training.compare_character import main

    data = write_comparison_inputs(tmp_path, 1, {"dimo": "dimo", "pose2d": "pose2d", "ablation": "dimo"})
    common = ["--test", str(data), "--steps", "1", "--threads", "1", "--seed", "3"]
    model = {name: ["--model", f"{name}={tmp_path / name}"] for name in ("dimo", "pose2d", "ablation")}
    together, first, second = (tmp_path / f"{name}.json" for name in ("together", "first", "second"))
    assert main([*model["dimo"], *model["pose2d"], *model["ablation"], *common, "--out", str(together)]) == 0
    assert main([*model["pose2d"], *common, "--out", str(first)]) == 0  # a baseline alone: scores, no tables
    assert "summary" not in json.loads(first.read_text())
    assert main([*model["dimo"], *model["ablation"], *common, "--out", str(second)]) == 0
    merged = tmp_path / "merged.json"
    assert main(["--merge", str(first), "--merge", str(second), "--out", str(merged)]) == 0
    expected, result = json.loads(together.read_text()), json.loads(merged.read_text())
    assert result["settings"]["reference"] == "dimo"
    for part in ("summary", "effects", "pose3d", "locator_floor"):
        assert flat(result[part]) == pytest.approx(flat(expected[part]), nan_ok=True), part
    assert result["bar"] == expected["bar"]
    assert main(["--merge", str(first), "--merge", str(first), "--out", str(merged)]) == 2  # a model twice
    other = tmp_path / "other.json"
    assert main([*model["pose2d"], *common[:-1], "4", "--out", str(other)]) == 0  # another seed
    assert main(["--merge", str(other), "--merge", str(second), "--out", str(merged)]) == 2
    assert main(["--merge", str(first), *model["dimo"]]) == 2  # scoring and merging at once
