"""The character's height: a body's height read from its joints is its mesh's, whatever the pose, and a motion given
a height is scaled to stand that tall, features untouched, through `dimo generate` and a job's settings alike."""

import numpy as np
import pytest
import torch

from dimo_engine.body.body_model import load_body_model
from dimo_engine.body.motions import generate_motion
from dimo_engine.character_height import ENCODED_HEIGHT_BIAS, body_height, motion_at_height, motion_height
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


@pytest.mark.parametrize("height", [0.1, 3.5])
def test_a_height_no_person_has_is_refused_by_the_settings_and_by_the_scaling(height):
    with pytest.raises(InputError, match="character_height must be a height in metres from 0.3 to 3"):
        GenerationSettings.from_dict({"character_height": height})
    joints, _ = posed_joints("squat", np.zeros(10))
    with pytest.raises(InputError, match="character_height must be a height in metres from 0.3 to 3"):
        motion_at_height(tokens(joints), height)


def test_a_job_draws_the_motion_at_the_height_it_was_given():
    from blender_addon.core.camera_rigs import static_view
    from dimo_engine.pipelines import create_character_pipeline
    from tests.pipeline_doubles import CountingPipeline

    class Recording(CountingPipeline):
        def __call__(self, *args, motion=None, **kwargs):
            self.motion = motion
            return super().__call__(*args, motion=motion, **kwargs)

    pipe = create_character_pipeline(seed=0)
    pipe.set_progress_bar_config(disable=True)
    motion = tokens(posed_joints("squat", np.zeros(10), frames=pipe.config.num_frames)[0])
    camera = static_view(0.0, 10.0, motion.num_frames, float(pipe.config.fps), 64, 64)
    recording = Recording(pipe)
    reference = np.zeros((64, 64, 4), np.uint8)
    reference[16:48, 24:40] = (200, 80, 40, 255)
    reenact(recording, reference, motion, [camera], settings=GenerationSettings(num_inference_steps=1, character_height=1.5))
    drawn = recording.motion.body[0, :, :, -3:]
    assert motion_height(drawn) / ENCODED_HEIGHT_BIAS == pytest.approx(1.5, rel=1e-4)


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
