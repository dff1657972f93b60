"""View-rich pairs: the three kinds, their cameras and frames, determinism, augmentation on driving frames only."""

import warnings

import numpy as np
import pytest
import torch

from dimo_engine.clips import ClipDataset
from tests.fixtures_clips import write_dataset
from training.pairs import PAIR_KINDS, SampleNumbers, ViewPairDataset, training_window_starts


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = write_dataset(tmp_path_factory.mktemp("pairs"), num_clips=2, num_frames=7, size=32)
    return ClipDataset(root, "train")


def _dataset(clips, **kwargs):
    options = dict(num_frames=5, height=32, width=32, ray_height=8, ray_width=8, window_stride=2,
                   ratios={"same_view": 1, "cross_view": 1, "moving_camera": 1}, seed=3)
    options.update(kwargs)
    return ViewPairDataset(clips, **options)


def test_window_starts_cover_the_clip():
    assert training_window_starts(7, 5, 2) == [0, 2]
    assert training_window_starts(3, 5, 4) == [0]  # short clips give one padded window


def test_three_pair_kinds_with_correct_cameras(clips):
    dataset = _dataset(clips)
    assert len(dataset) == 4  # 2 clips x 2 windows
    seen = set()
    for sample in range(40):
        choice = dataset.choose(sample)
        example = dataset[sample]
        kind = PAIR_KINDS[int(example["kind"])]
        assert kind == choice.kind
        seen.add(kind)
        clip = clips[choice.clip_index]
        indices = example["frame_indices"].numpy()
        assert indices.tolist() == list(range(choice.start, choice.start + 5))
        driving = example["driving_world_to_camera"].numpy()
        target = example["target_world_to_camera"].numpy()
        assert np.allclose(target, clip.views[choice.target_view].camera.world_to_camera[indices])
        assert clip.views[choice.driving_view].kind != "moving"
        if kind == "same_view":
            assert choice.driving_view == choice.target_view and np.allclose(driving, target)
        elif kind == "cross_view":
            assert choice.driving_view != choice.target_view
            assert clip.views[choice.target_view].kind != "moving"
            assert not np.allclose(driving[0], target[0], atol=1e-3)  # the target camera differs
        else:
            assert clip.views[choice.target_view].kind == "moving"
            assert not np.allclose(target[0], target[-1], atol=1e-3)  # the target camera moves
        # same frames of the same motion, whatever the views
        assert torch.allclose(example["body_pose"], torch.from_numpy(clip.motion["body_pose"][indices]))
        assert example["driving_frames"].shape == example["target_frames"].shape == (5, 3, 32, 32)
        assert example["target_rays"].shape == (6, 5, 8, 8) and example["reference_rays"].shape == (6, 1, 8, 8)
        assert example["hand_boxes"].shape == (5, 2, 4)
        target_pixels = clip.views[choice.target_view].frames(indices)[..., :3]
        assert torch.allclose(example["target_frames"], torch.from_numpy(target_pixels).permute(0, 3, 1, 2) / 255.0)
    assert seen == set(PAIR_KINDS)


def test_ratios_select_kinds_and_examples_are_reproducible(clips):
    only_moving = _dataset(clips, ratios={"moving_camera": 1})
    assert {only_moving.choose(s).kind for s in range(20)} == {"moving_camera"}
    a, b = _dataset(clips)[11], _dataset(clips)[11]
    assert all(torch.equal(a[key], b[key]) for key in a)
    # each epoch visits every (clip, window) item once
    items = {(_dataset(clips).choose(s).clip_index, _dataset(clips).choose(s).start) for s in range(4)}
    assert len(items) == 4


def test_augmentation_touches_driving_frames_only(clips):
    calls = []

    def darken(frames, hand_boxes, seed):
        calls.append(seed)  # the augmentation's randomness must be reproducible
        return frames * 0.5, hand_boxes + 1

    plain, augmented = _dataset(clips)[5], _dataset(clips, augmentation=darken)[5]
    assert torch.allclose(augmented["driving_frames"], plain["driving_frames"] * 0.5)
    assert torch.allclose(augmented["hand_boxes"], plain["hand_boxes"] + 1)
    assert torch.equal(augmented["target_frames"], plain["target_frames"])
    assert torch.equal(augmented["reference_image"], plain["reference_image"])
    _dataset(clips, augmentation=darken)[5]
    _dataset(clips, augmentation=darken)[6]
    assert calls[0] == calls[1] != calls[2]


def test_driving_augmentation_warps_frames_and_boxes_together(clips):
    from dimo_engine.augmentation import DrivingAugmentation

    plain = _dataset(clips)[7]
    augmented = _dataset(clips, augmentation=DrivingAugmentation())[7]
    assert not torch.allclose(augmented["driving_frames"], plain["driving_frames"])
    assert augmented["hand_boxes"].shape == plain["hand_boxes"].shape
    assert torch.equal(augmented["target_frames"], plain["target_frames"])


def test_resized_examples_scale_hand_boxes(clips):
    small, large = _dataset(clips)[2], _dataset(clips, height=64, width=64, ray_height=16, ray_width=16)[2]
    assert large["driving_frames"].shape == (5, 3, 64, 64)
    assert torch.allclose(large["hand_boxes"], small["hand_boxes"] * 2)


def test_sample_numbers_resume_and_shard_without_overlap():
    full = list(SampleNumbers(2, 2, 1, 0, 0, 5))
    assert list(SampleNumbers(2, 2, 1, 0, 3, 5)) == full[3 * 4:]
    ranks = [list(SampleNumbers(2, 1, 2, r, 0, 3)) for r in range(2)]
    assert not set(ranks[0]) & set(ranks[1]) and sorted(ranks[0] + ranks[1]) == list(range(12))


def test_person_masks_are_the_target_views_alpha(clips):
    plain, masked = _dataset(clips)[4], _dataset(clips, person_masks=True)[4]
    assert "target_mask" not in plain
    mask = masked["target_mask"]
    assert mask.shape == (5, 32, 32) and 0.0 < mask.mean() < 0.5 and mask.min() == 0.0
    view = clips[int(masked["clip_index"])].views[_dataset(clips).choose(4).target_view]
    alpha = torch.from_numpy(view.frames(masked["frame_indices"].numpy())[..., 3]).float() / 255.0
    assert torch.allclose(mask, alpha)  # the fixture renders at the example size: no resampling


def test_a_stale_latent_cache_is_ignored_with_one_warning(tmp_path):
    from diffusers import AutoencoderKLWan

    from dimo_engine.pipelines import create_random_pipeline
    from training.cache_latents import cache_dataset_latents, vae_cache_tag

    clips = ClipDataset(write_dataset(tmp_path / "clips", num_clips=1, num_frames=7, size=32), "train")
    vae = create_random_pipeline(seed=0, preset="tiny").vae
    vae.save_pretrained(tmp_path / "a")
    vae.save_pretrained(tmp_path / "b")
    loaded = AutoencoderKLWan.from_pretrained(tmp_path / "b")
    # The same VAE loaded from another folder keeps its tag (and so its cache); changed weights do not.
    assert vae_cache_tag(AutoencoderKLWan.from_pretrained(tmp_path / "a")) == vae_cache_tag(loaded)
    cache_dataset_latents(clips, vae, num_frames=5, height=32, width=32, window_stride=2)
    fresh = _dataset(clips, latent_cache=True, cache_tag=vae_cache_tag(loaded))[0]
    assert "target_latent_mean" in fresh and "target_frames" not in fresh
    with torch.no_grad():
        loaded.decoder.conv_out.bias.add_(0.01)
    stale = _dataset(clips, latent_cache=True, cache_tag=vae_cache_tag(loaded))
    with pytest.warns(UserWarning, match="made by another VAE"):
        example = stale[0]
    assert "target_frames" in example and "target_latent_mean" not in example
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stale[1]  # warned once per dataset, not at every step
