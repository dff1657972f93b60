"""DiMo pipeline: generation shapes, save -> load -> same frames, clear input errors, cancellation, and a tiny
overfit run through the public training entry points."""

import json

import numpy as np
import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from blender_addon.core.camera_path import CameraPath
from blender_addon.core.camera_rigs import intrinsics_from_fov, look_at
from dimo_engine.errors import InputError
from dimo_engine.pipelines import DiMoPipeline, MotionTokens, create_random_pipeline, load_pipeline


def orbit(num_frames, size, start_deg=0.0, sweep_deg=60.0):
    angles = np.radians(np.linspace(start_deg, start_deg + sweep_deg, num_frames))
    eyes = np.stack([3 * np.sin(angles), -3 * np.cos(angles), np.full_like(angles, 1.0)], axis=-1)
    return CameraPath(width=size, height=size, fps=12.0, frames=np.arange(num_frames),
                      K=np.repeat(intrinsics_from_fov(40.0, size, size)[None], num_frames, 0),
                      world_to_camera=np.stack([look_at(eye, (0.0, 0.0, 0.9)) for eye in eyes]))


@pytest.fixture(scope="module")
def pipe():
    return create_random_pipeline(seed=0, preset="tiny")


@pytest.fixture(scope="module")
def driving(pipe):
    n = pipe.config.num_frames
    frames = torch.rand(n, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor([[4.0, 4.0, 16.0, 16.0], [30.0, 28.0, 44.0, 42.0]]).expand(n, 2, 4)
    return frames, boxes


def _generate(pipe, motion, camera, seed=0, **kwargs):
    reference = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    return pipe(reference, motion=motion, target_cameras=camera, reference_camera=orbit(1, 32),
                num_inference_steps=3, generator=torch.Generator().manual_seed(seed), **kwargs)


def test_generate_shapes_and_motion_tokens_round_trip(pipe, driving, tmp_path):
    n = pipe.config.num_frames
    motion = pipe.encode_motion(*driving)
    assert motion.body.shape[:2] == (1, n) and motion.hands.shape[:2] == (1, n)
    motion.save(tmp_path / "motion.safetensors")
    reloaded = MotionTokens.load(tmp_path / "motion.safetensors")
    torch.testing.assert_close(reloaded.body, motion.body)
    out = _generate(pipe, reloaded, orbit(n, 32))
    assert out.frames.shape == (1, n, 32, 32, 3)
    assert 0.0 <= out.frames.min() and out.frames.max() <= 1.0
    # driving_frames straight into the call gives the same result as encoding first
    direct = pipe((np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8),
                  driving_frames=driving[0], hand_boxes=driving[1], target_cameras=orbit(n, 32),
                  reference_camera=orbit(1, 32), num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(direct.frames, out.frames, atol=1e-5)


def test_save_load_same_output_for_same_seed(driving, tmp_path):
    pipe = create_random_pipeline(seed=2, preset="tiny")
    # As after training: the new branches are non-zero, so their weights must round-trip too.
    torch.nn.init.normal_(pipe.transformer.camera_embedding.weight, std=0.05)
    for block in pipe.transformer.motion_blocks:
        torch.nn.init.normal_(block.to_out.weight, std=0.05)
    n = pipe.config.num_frames
    motion = pipe.encode_motion(*driving)
    expected = _generate(pipe, motion, orbit(n, 32), seed=3).frames
    pipe.save_pretrained(tmp_path / "ckpt")
    index = json.loads((tmp_path / "ckpt" / "model_index.json").read_text())
    assert index["transformer"] == ["dimo_engine.models.transformer_dimo", "DiMoTransformer3DModel"]
    assert list((tmp_path / "ckpt" / "transformer").glob("*.safetensors"))
    loaded = load_pipeline(tmp_path / "ckpt", device="cpu")
    assert isinstance(loaded, DiMoPipeline) and loaded.config.num_frames == n
    np.testing.assert_allclose(_generate(loaded, motion, orbit(n, 32), seed=3).frames, expected, atol=1e-6)
    assert not np.allclose(_generate(loaded, motion, orbit(n, 32), seed=4).frames, expected)
    with pytest.raises(InputError, match="model_index.json"):
        load_pipeline(tmp_path / "nothing", device="cpu")


def test_clear_errors(pipe, driving):
    n = pipe.config.num_frames
    motion = pipe.encode_motion(*driving)
    with pytest.raises(InputError, match="4k\\+1"):
        _generate(pipe, MotionTokens(motion.body[:, :-1], motion.hands[:, :-1]), orbit(n - 1, 32))
    with pytest.raises(InputError, match="camera path has"):
        _generate(pipe, motion, orbit(n + 4, 32))
    with pytest.raises(InputError, match="hand boxes"):
        pipe.encode_motion(driving[0])  # the tiny pipeline's locator is untrained
    with pytest.raises(InputError, match="Driving frames"):
        pipe.encode_motion(driving[0][:, :2], driving[1])
    with pytest.raises(InputError, match="motion_guidance_scale"):
        _generate(pipe, motion, orbit(n, 32), motion_guidance_scale=-1.0)


def test_callback_can_interrupt(pipe, driving):
    seen = []

    def stop_after_first(pipeline, step, timestep, kwargs):
        seen.append(step)
        pipeline._interrupt = True
        return kwargs

    out = _generate(pipe, pipe.encode_motion(*driving), orbit(pipe.config.num_frames, 32),
                    callback_on_step_end=stop_after_first)
    assert seen == [0] and out.frames.shape[1] == pipe.config.num_frames


def test_precomputed_reference_latents_and_a_per_call_frame_size(pipe, driving):
    n = pipe.config.num_frames
    motion = pipe.encode_motion(*driving)
    reference = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    expected = _generate(pipe, motion, orbit(n, 32)).frames
    reference_latents = pipe.encode_reference(reference)
    again = pipe(reference_latents=reference_latents, motion=motion, target_cameras=orbit(n, 32),
                 reference_camera=orbit(1, 32), num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(again.frames, expected)
    with pytest.raises(InputError, match="exactly one of reference_image"):
        _generate(pipe, motion, orbit(n, 32), reference_latents=reference_latents)

    wide = _generate(pipe, motion, orbit(n, 48), height=32, width=48).frames
    assert wide.shape == (1, n, 32, 48, 3)
    with pytest.raises(InputError, match="reference_latents have shape"):  # encoded at the other size
        pipe(reference_latents=reference_latents, motion=motion, target_cameras=orbit(n, 48), height=32, width=48)
    with pytest.raises(InputError, match="multiples of 16"):
        _generate(pipe, motion, orbit(n, 32), height=40)


class RecordingCallback(PipelineCallback):
    """A diffusers step callback that records what it is called with and hands the latents back unchanged."""

    tensor_inputs = ["latents"]

    def __init__(self):
        super().__init__()
        self.calls = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        self.calls.append((pipeline, step_index, sorted(callback_kwargs), tuple(callback_kwargs["latents"].shape)))
        return callback_kwargs


def test_a_pipeline_callback_gets_the_pipeline_and_its_own_tensor_inputs(pipe, driving):
    motion = pipe.encode_motion(*driving)
    camera = orbit(pipe.config.num_frames, 32)
    first, second = RecordingCallback(), RecordingCallback()
    # The callbacks' own tensor_inputs win over the argument, as in diffusers' pipelines.
    with_callbacks = _generate(pipe, motion, camera, callback_on_step_end=MultiPipelineCallbacks([first, second]),
                               callback_on_step_end_tensor_inputs=[]).frames
    latent_shape = (1, 4, (pipe.config.num_frames - 1) // 4 + 1, 4, 4)
    assert first.calls == second.calls == [(pipe, step, ["latents"], latent_shape) for step in range(3)]
    np.testing.assert_array_equal(with_callbacks, _generate(pipe, motion, camera).frames)

    class AsksForNoise(RecordingCallback):
        tensor_inputs = ["noise"]

    with pytest.raises(InputError, match="callback_on_step_end_tensor_inputs"):
        _generate(pipe, motion, camera, callback_on_step_end=AsksForNoise())


@pytest.mark.slow
def test_overfit_one_clip_reduces_flow_matching_loss():
    torch.manual_seed(0)
    pipe = create_random_pipeline(seed=1, preset="tiny")
    n = pipe.config.num_frames
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(1, n, 3, 32, 32, generator=generator)
    boxes = torch.tensor([[2.0, 2.0, 12.0, 12.0], [20.0, 20.0, 30.0, 30.0]]).expand(1, n, 2, 4)
    with torch.no_grad():
        x0 = pipe.encode_video_latents(video)  # (1, C, T, h, w)
        reference = pipe.encode_reference(video[:, 0])
        rays = pipe.camera_rays(orbit(n, 32))
    noise = torch.randn(x0.shape, generator=generator)
    sigmas = torch.tensor([0.2, 0.4, 0.6, 0.8])
    modules = [pipe.transformer, pipe.body_encoder, pipe.hand_encoder]
    for module in modules:
        module.train()
    optimiser = torch.optim.AdamW([p for m in modules for p in m.parameters()], lr=2e-3)
    losses = []
    for step in range(200):
        motion, body_pose, hand_pose = pipe.motion_tokens_with_pose(video, boxes)
        sigma = sigmas[step % 4]
        noisy = (1 - sigma) * x0 + sigma * noise
        velocity = pipe.predict_velocity(noisy, (sigma * 1000).view(1), motion.joined(), rays, reference)
        loss = torch.nn.functional.mse_loss(velocity, noise - x0)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert body_pose.shape == (1, n, 22, 6) and hand_pose.shape == (1, n, 2, 15, 6)
    assert np.mean(losses[:4]) / np.mean(losses[-4:]) >= 5.0


def test_trained_keypoint_locator_gives_hand_boxes(driving):
    from dimo_engine.models import KeypointLocator

    locator = KeypointLocator(image_size=32, channels=(8, 8), trained=True).eval()
    frames = driving[0]
    with torch.no_grad():
        joints, confidence = locator.locate(frames)
        boxes = locator.hand_boxes(frames)
    assert joints.shape == (len(frames), 52, 2) and confidence.shape == (len(frames), 52)
    assert (joints >= 0).all() and (joints <= 48).all()  # in the frames' own pixel size
    assert boxes.shape == (len(frames), 2, 4) and (boxes[..., 2:] > boxes[..., :2]).all()
    pipe = create_random_pipeline(seed=0, preset="tiny")
    pipe.keypoint_locator = locator
    motion = pipe.encode_motion(frames)  # no boxes: the trained locator finds the hands
    assert motion.hands.shape[1] == len(frames)


def test_keypoint_locator_hand_boxes_are_the_renderers_recipe(driving):
    from blender_addon.core.annotations import SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND, hand_boxes
    from dimo_engine.models import KeypointLocator

    locator = KeypointLocator(image_size=32, channels=(8, 8), trained=True).eval()
    frames = driving[0][..., :40]  # 48 x 40: the recipe pads by 2 % of the longer side
    with torch.no_grad():
        joints, _ = locator.locate(frames)
        boxes = locator.hand_boxes(frames)
    expected = hand_boxes(joints.double().numpy(), np.ones(joints.shape[:2], dtype=bool),
                          [SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND], 48)
    torch.testing.assert_close(boxes, torch.from_numpy(expected).float())
    sides = boxes[..., 2:] - boxes[..., :2]
    torch.testing.assert_close(sides[..., 0], sides[..., 1])  # square, as the training crops


def test_the_shipped_keypoint_locator_config_has_no_unknown_keys():
    from pathlib import Path

    from dimo_engine.models import KeypointLocator

    folder = Path(__file__).resolve().parents[1] / "dimo_engine" / "weights" / "default" / "keypoint_locator"
    _, unused, _ = KeypointLocator.extract_init_dict(KeypointLocator.load_config(folder))
    assert not unused  # hand_padding, no longer read, is still accepted


def test_default_reference_camera_is_a_front_view(driving):
    pipe = create_random_pipeline(seed=0, preset="tiny")
    torch.nn.init.normal_(pipe.transformer.camera_embedding.weight, std=0.05)  # make the rays matter
    camera = pipe.default_reference_camera()
    assert camera.num_frames == 1 and (camera.width, camera.height) == (32, 32)
    eye = camera.camera_to_world[0, :3, 3]
    assert eye[1] < -abs(eye[0])  # in front of a character facing -Y
    motion = pipe.encode_motion(*driving)
    n = pipe.config.num_frames
    reference = np.zeros((32, 32, 3), np.uint8)

    def frames(reference_camera):
        return pipe(reference, motion=motion, target_cameras=orbit(n, 32), reference_camera=reference_camera,
                    num_inference_steps=2, generator=torch.Generator().manual_seed(0)).frames

    implicit = frames(None)
    np.testing.assert_allclose(implicit, frames(camera), atol=1e-6)
    assert np.abs(implicit - frames(orbit(1, 32, start_deg=90.0))).max() > 1e-4
