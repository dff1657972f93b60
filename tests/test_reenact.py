"""reenact: a job encodes its reference once, whatever its cameras and windows, and gives the frames that calling the
pipeline with the picture, window by window, gave."""

import numpy as np
import pytest
import torch

from blender_addon.core.camera_rigs import static_view
from dimo_engine.reenact import GenerationSettings, reenact, reference_to_pil
from dimo_engine.pipelines import create_character_pipeline, create_random_pipeline
from dimo_engine.pipelines.pipeline_dimo import MotionTokens
from tests.pipeline_doubles import CountingPipeline


class PictureEveryWindow(CountingPipeline):
    """The pipeline as reenact called it before: the picture itself in every call, encoded there."""

    def __init__(self, pipe, reference_image):
        super().__init__(pipe)
        self._reference_image = reference_image

    def __call__(self, reference_latents=None, **kwargs):
        assert reference_latents is not None
        self.calls += 1
        return self._pipe(self._reference_image, **kwargs)


def wan_job():
    """The Wan pipeline at the tiny preset: (pipe, motion, reference, total frames, camera size)."""
    pipe = create_random_pipeline(seed=0, preset="tiny")
    window = pipe.config.num_frames  # 9: 13 frames make two windows
    frames = torch.rand(13, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[4.0, 4.0, 16.0, 16.0], [30.0, 28.0, 44.0, 42.0]]).expand(13, 2, 4)
    motion = pipe.encode_motion(frames, boxes)
    reference = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    return pipe, motion, reference, window + 4, 32


def character_job():
    """The default model's pipeline, untrained: a standing body's anchors, an RGBA reference."""
    pipe = create_character_pipeline(seed=0)
    total = pipe.config.num_frames + 4  # two windows
    body = torch.zeros(1, total, 22, 16 + 3)
    body[..., -3:] = torch.stack([torch.linspace(-0.2, 0.2, 22), torch.zeros(22), torch.linspace(0.1, 1.7, 22)], -1)
    hands = torch.zeros(1, total, 2, 16 + 3)
    hands[..., -3:] = body[0, 0, [20, 21], -3:]
    reference = np.zeros((64, 64, 4), np.uint8)
    reference[16:48, 24:40] = (200, 80, 40, 255)
    return pipe, MotionTokens(body, hands), reference, total, 64


@pytest.mark.parametrize("job", [wan_job, character_job], ids=["wan", "character"])
def test_reenact_encodes_the_reference_once_per_job_and_gives_the_same_frames(job):
    pipe, motion, reference, total, size = job()
    pipe.set_progress_bar_config(disable=True)
    cameras = [static_view(azimuth, 10.0, total, float(pipe.config.fps), size, size) for azimuth in (0.0, 60.0)]
    settings = GenerationSettings(num_inference_steps=2, seed=3)

    counting = CountingPipeline(pipe)
    frames = reenact(counting, reference, motion, cameras, settings=settings)
    assert counting.calls == 4  # 2 cameras x 2 windows
    assert counting.reference_encodings == 1

    picture = reference if getattr(pipe, "reads_alpha", False) else reference_to_pil(reference)
    before = reenact(PictureEveryWindow(pipe, picture), reference, motion, cameras, settings=settings)
    for got, expected in zip(frames, before):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("given, words", [
    ({"num_inference_steps": 0}, "settings: num_inference_steps must be an integer from 1 to 200, got 0"),
    ({"num_inference_steps": 20.0}, "num_inference_steps must be an integer from 1 to 200, got 20.0"),
    ({"num_inference_steps": True}, "num_inference_steps must be an integer from 1 to 200, got True"),
    ({"motion_guidance_scale": float("nan")}, "motion_guidance_scale must be a number from 0 to 30, got nan"),
    ({"motion_guidance_scale": "2"}, "motion_guidance_scale must be a number from 0 to 30, got '2'"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
    ({"character_height": 0.2}, "character_height must be a height in metres from 0.3 to 3, got 0.2"),
    ({"seed": 1, "steps": 20}, "settings has unknown field(s) ['steps']; use only "
                               "['character_height', 'motion_guidance_scale', 'num_inference_steps', 'seed']"),
    ([20], "settings must be a JSON object like"),
])
def test_bad_settings_are_one_input_error_naming_the_field(given, words):
    from dimo_engine.errors import InputError

    with pytest.raises(InputError) as caught:
        GenerationSettings.from_dict(given)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_settings_keep_the_pipelines_defaults_and_take_whole_numbers_as_scales():
    assert GenerationSettings.from_dict({}) == GenerationSettings()
    settings = GenerationSettings.from_dict({"num_inference_steps": 200, "motion_guidance_scale": 3, "seed": 2**63 - 1})
    assert (settings.num_inference_steps, settings.motion_guidance_scale, settings.seed) == (200, 3.0, 2**63 - 1)
