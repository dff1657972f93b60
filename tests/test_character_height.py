"""The character's height: a body's height read from its joints is its mesh's, whatever the pose; a character's
height is measured in an image through the camera that took it, whatever its pose; and a motion given a height, or a
reference image with its camera, is scaled to stand that tall, features untouched, through `dimo generate` and a job's
settings alike."""

import numpy as np
import pytest
import torch

from dimo_engine.body.body_model import load_body_model
from dimo_engine.body.motions import generate_motion
from dimo_engine.character_height import (
    ENCODED_HEIGHT_BIAS,
    body_height,
    height_in_view,
    motion_at_height,
    motion_height,
)
from dimo_engine.errors import InputError
from dimo_engine.pipelines.pipeline_dimo import MotionTokens
from dimo_engine.reenact import GenerationSettings, reenact


def posed_joints(family: str, betas, frames: int = 9) -> tuple[torch.Tensor, float]:
    """A procedural motion's body joints `(F, 22, 3)` for `betas`, and that body's mesh height (floor to crown)."""
    body = load_body_model()
    joints, _ = body.forward(generate_motion(family, seed=3, num_frames=frames, fps=12.0, betas=betas))
    return torch.from_numpy(joints[:, :22]).float(), body_height(betas, body)


@pytest.mark.parametrize("family", ["squat", "walk", "reach"])
@pytest.mark.parametrize("stature", [-2.3, 0.0, 1.8])
def test_a_bodys_height_is_read_from_its_joints_whatever_its_pose(family, stature):
    betas = np.zeros(10)
    betas[0], betas[1] = stature, 0.7  # a short, typical or tall body, of other proportions too
    joints, mesh_height = posed_joints(family, betas)
    assert motion_height(joints) == pytest.approx(mesh_height, rel=0.02)


def tokens(joints: torch.Tensor) -> MotionTokens:
    features = torch.randn(1, joints.shape[0], 24, 16, generator=torch.Generator().manual_seed(0))
    anchors = torch.cat([joints, joints[:, [20, 21]]], dim=1)[None]  # hand tokens at the wrists
    both = torch.cat([features, anchors], dim=-1)
    return MotionTokens(both[:, :, :22], both[:, :, 22:])


def test_a_motion_given_a_height_stands_that_tall_and_moves_as_that_body_would():
    joints, _ = posed_joints("walk", np.zeros(10))
    motion = tokens(joints)
    scaled = motion_at_height(motion, 1.2)
    # the anchors are read as the encoders read them (a little off, ENCODED_HEIGHT_BIAS) and scaled to 1.2 m
    assert motion_height(scaled.body[0, :, :, -3:]) / ENCODED_HEIGHT_BIAS == pytest.approx(1.2, rel=1e-4)
    for before, after in ((motion.body, scaled.body), (motion.hands, scaled.hands)):
        torch.testing.assert_close(after[..., :-3], before[..., :-3])  # the learned features are the clip's own
    ratio = scaled.body[..., -3:] / motion.body[..., -3:]
    torch.testing.assert_close(ratio, torch.full_like(ratio, float(ratio[0, 0, 0, 0])))  # travel and pose alike
    assert float(ratio[0, 0, 0, 0]) < 0.75  # a typical body made a child's height


def camera_at(azimuth_deg: float, elevation_deg: float, fill: float, size: int = 128):
    """A still camera around a standing person, framing a 1.8 m box to `fill` of the image: its CameraPath."""
    from blender_addon.core.camera_rigs import static_view

    box = (np.array([-0.5, -0.4, 0.0]), np.array([0.5, 0.4, 1.8]))
    return static_view(azimuth_deg, elevation_deg, 1, 12.0, size, size, seed=5, subject_box=box, fill_range=(fill, fill))


def proxy_matte(joints: torch.Tensor, camera, supersample: int = 4) -> np.ndarray:
    """The body proxy of one pose `(22, 3)` over a whole camera image, as a renderer's anti-aliased matte: a uint8
    `(H, W)`, each pixel the share of it the capsules cover (drawn sharp at `supersample` times the size)."""
    from dimo_engine.character_layer import body_proxy

    fine = camera.resized(camera.width * supersample, camera.height * supersample)
    K, world_to_camera = torch.from_numpy(fine.K[:1]).float(), torch.from_numpy(fine.world_to_camera[:1]).float()
    size = fine.width
    coverage = body_proxy(joints[None], K, world_to_camera, torch.tensor([[0.0, 0.0, size - 1.0, size - 1.0]]), size)
    sharp = (coverage[0, 0] >= 0.5).float().reshape(camera.height, supersample, camera.width, supersample)
    return (sharp.mean(dim=(1, 3)).numpy() * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("family", ["squat", "reach", "walk"])
@pytest.mark.parametrize("stature", [-2.3, 1.8])
def test_a_characters_height_is_measured_in_an_image_through_its_camera_whatever_its_pose(family, stature):
    betas = np.zeros(10)
    betas[0] = stature  # a 1.55 m or a 1.92 m body
    joints, mesh_height = posed_joints(family, betas)
    found = []
    for camera in (camera_at(0.0, 0.0, 0.7), camera_at(60.0, 25.0, 0.5)):  # near at eye level; far and above
        for frame in range(joints.shape[0]):
            matte = proxy_matte(joints[frame], camera)
            found.append(height_in_view(matte, camera.K[0], camera.world_to_camera[0], joints[frame]))
    assert np.array(found) == pytest.approx(mesh_height, rel=0.04)  # 0.010 mean off on 32 test renders (true pose)


def test_the_pose_read_on_the_image_turns_how_far_up_the_body_reaches_into_how_tall_it_stands():
    joints, mesh_height = posed_joints("squat", np.zeros(10))
    camera = camera_at(0.0, 0.0, 0.85)
    K, world_to_camera = camera.K[0], camera.world_to_camera[0]
    deepest = int(joints[:, 0, 2].argmin())  # the pelvis at its lowest
    matte = proxy_matte(joints[deepest], camera)
    assert height_in_view(matte, K, world_to_camera, joints[deepest]) == pytest.approx(mesh_height, rel=0.05)
    # read as if it stood upright, the crouched body would be measured short
    assert height_in_view(matte, K, world_to_camera, joints[0]) < 0.9 * mesh_height


def test_a_matte_that_cannot_say_how_tall_the_character_is_gives_no_height():
    joints, _ = posed_joints("reach", np.zeros(10), frames=1)
    camera = camera_at(0.0, 0.0, 0.85)  # at eye level, looking level: the horizon is the image's middle row
    K, world_to_camera = camera.K[0], camera.world_to_camera[0]
    matte = proxy_matte(joints[0], camera)
    assert height_in_view(matte, K, world_to_camera, joints[0]) is not None
    assert height_in_view(np.zeros_like(matte), K, world_to_camera, joints[0]) is None  # no one in the image
    top = int(np.flatnonzero(matte.max(axis=1) >= 128)[0])
    assert height_in_view(matte[top:], K, world_to_camera, joints[0]) is None  # the head cut by the image's top edge
    floating = np.zeros_like(matte)
    floating[20:50, 50:70] = 255  # all of it above the horizon: no ground under its lowest point
    assert height_in_view(floating, K, world_to_camera, joints[0]) is None


@pytest.mark.parametrize("height", [0.1, 3.5])
def test_a_height_no_person_has_is_refused_by_the_settings_and_by_the_scaling(height):
    with pytest.raises(InputError, match="character_height must be a height in metres from 0.3 to 3"):
        GenerationSettings.from_dict({"character_height": height})
    joints, _ = posed_joints("squat", np.zeros(10))
    with pytest.raises(InputError, match="character_height must be a height in metres from 0.3 to 3"):
        motion_at_height(tokens(joints), height)


def recording_pipeline():
    """An untrained character pipeline wrapped to keep the motion it was last asked to draw (`.motion`)."""
    from dimo_engine.pipelines import create_character_pipeline
    from tests.pipeline_doubles import CountingPipeline

    class Recording(CountingPipeline):
        def __call__(self, *args, motion=None, **kwargs):
            self.motion = motion
            return super().__call__(*args, motion=motion, **kwargs)

    pipe = create_character_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    return Recording(pipe)


def test_a_job_draws_the_motion_at_the_height_it_was_given():
    from blender_addon.core.camera_rigs import static_view

    recording = recording_pipeline()
    motion = tokens(posed_joints("squat", np.zeros(10), frames=recording.config.num_frames)[0])
    camera = static_view(0.0, 10.0, motion.num_frames, float(recording.config.fps), 64, 64)
    reference = np.zeros((64, 64, 4), np.uint8)
    reference[16:48, 24:40] = (200, 80, 40, 255)
    reenact(recording, reference, motion, [camera], settings=GenerationSettings(num_inference_steps=1, character_height=1.5))
    drawn = recording.motion.body[0, :, :, -3:]
    assert motion_height(drawn) / ENCODED_HEIGHT_BIAS == pytest.approx(1.5, rel=1e-4)


def test_a_job_with_its_references_camera_draws_the_character_as_tall_as_the_reference_shows_it():
    recording = recording_pipeline()
    num_frames, fps = recording.config.num_frames, float(recording.config.fps)
    betas = np.zeros(10)
    betas[0] = -2.3
    short, short_height = posed_joints("reach", betas, frames=num_frames)  # a 1.55 m character
    typical, _ = posed_joints("walk", np.zeros(10), frames=num_frames)
    # the untrained encoders' reading of the reference replaced by the pose it shows: the rest is the shipped path
    recording._pipe.encode_driving_clip = lambda frames, fps, source="": tokens(short[:1].expand(frames.shape[0], -1, -1))
    reference_camera = camera_at(0.0, 0.0, 0.7)
    matte = proxy_matte(short[0], reference_camera)
    reference = np.concatenate([np.full(matte.shape + (3,), 180, np.uint8), matte[..., None]], axis=-1)
    camera = camera_at(30.0, 10.0, 0.6).take(np.zeros(num_frames, dtype=int), fps)

    def drawn_height(reference_image, **settings) -> float:
        reenact(recording, reference_image, tokens(typical), [camera], reference_camera=reference_camera,
                settings=GenerationSettings(num_inference_steps=1, **settings))
        return motion_height(recording.motion.body[0, :, :, -3:]) / ENCODED_HEIGHT_BIAS

    assert drawn_height(reference) == pytest.approx(short_height, rel=0.04)
    assert drawn_height(reference, character_height=1.9) == pytest.approx(1.9, rel=1e-4)  # the artist's word wins
    as_read = motion_height(typical) / ENCODED_HEIGHT_BIAS
    assert drawn_height(reference[..., :3]) == pytest.approx(as_read, rel=1e-4)  # no alpha: nothing to measure


def test_a_model_whose_motion_has_no_body_refuses_a_height():
    from tests.test_reenact import wan_job

    pipe, motion, reference, total, size = wan_job()
    from blender_addon.core.camera_rigs import static_view

    camera = static_view(0.0, 10.0, total, float(pipe.config.fps), size, size)
    with pytest.raises(InputError, match="character_height=1.7: this model's motion tokens carry no body"):
        reenact(pipe, reference, motion, [camera], settings=GenerationSettings(num_inference_steps=1, character_height=1.7))


@pytest.mark.parametrize("height, sent", [(0.0, None), (1.62, 1.62)])
def test_the_addon_sends_the_characters_height_when_the_artist_gives_one(tmp_path, height, sent):
    from blender_addon import generate_request
    from dimo_engine.video_io import write_video
    from tests.addon_scene import enable_addon, make_shot

    enable_addon()
    scene = make_shot(tmp_path, frame_end=17)
    scene.dimo.driving_video = str(write_video(np.zeros((34, 16, 16, 3), np.uint8), tmp_path / "walk.mp4", fps=24.0))
    scene.dimo.character_height = height
    request = generate_request.prepare_generate(scene, [])
    settings = GenerationSettings.from_dict(request.settings)  # what the engine makes of it
    assert settings.character_height == (pytest.approx(sent) if sent else None)


def test_the_addon_measures_the_selected_characters_height_as_posed():
    import bpy

    from tests.addon_scene import enable_addon

    enable_addon()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    enable_addon()
    scene = bpy.context.scene
    root = bpy.data.objects.new("hero_root", None)  # the character's root empty, its body parented under it
    mesh = bpy.data.meshes.new("hero_body")
    mesh.from_pydata([(x, y, z) for x in (-0.2, 0.2) for y in (-0.1, 0.1) for z in (0.0, 1.0)], [], [])
    body = bpy.data.objects.new("hero_body", mesh)
    body.parent = root
    body.scale = (1.0, 1.0, 1.68)
    for obj in (root, body):
        scene.collection.objects.link(obj)
    bpy.context.view_layer.update()
    for obj in scene.objects:
        obj.select_set(obj is root)
    with bpy.context.temp_override(selected_objects=[root]):
        assert bpy.ops.dimo.measure_character_height() == {"FINISHED"}
    assert scene.dimo.character_height == pytest.approx(1.68, abs=1e-4)
    with bpy.context.temp_override(selected_objects=[]), pytest.raises(RuntimeError, match="no visible geometry"):
        bpy.ops.dimo.measure_character_height()  # headless, the operator's error report is raised
    assert scene.dimo.character_height == pytest.approx(1.68, abs=1e-4)
