"""Generate's pre-check of the frame range against the driving clip's length: the fix is named in Blender's
terms (the End frame that fits, or a still camera) before anything is sent, and what it lets through the
engine's own check accepts."""

import numpy as np
import pytest
import torch

from tests.addon_scene import enable_addon, make_shot


@pytest.fixture(autouse=True)
def addon():
    enable_addon()
    yield


def _clip(path, frames: int, fps: float):
    from dimo_engine.video_io import write_video

    return write_video(np.zeros((frames, 16, 16, 3), np.uint8), path, fps=fps)


def test_a_range_longer_than_the_clip_names_the_end_frame_that_fits(tmp_path):
    from blender_addon import generate_request

    scene = make_shot(tmp_path, frame_end=250)
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.dimo.driving_video = str(_clip(tmp_path / "dance.mp4", 48, 24.0))  # 2 s
    with pytest.raises(ValueError) as refused:
        generate_request.prepare_generate(scene, [])
    message = str(refused.value)
    assert "frame range 1-250 is 250 frames at 24 fps (10.4 s)" in message, message
    assert "dance.mp4 lasts 2.0 s (24 frames at the model's 12 fps)" in message, message
    assert "set the scene's End frame to 48 for the clip's 48 frames at 24 fps, or to 1 for a still camera." in message
    assert "export the camera" not in message and ". " not in message.rstrip(".")

    scene.dimo.use_scene_range = False
    scene.dimo.frame_start, scene.dimo.frame_end = 10, 30
    with pytest.raises(ValueError, match="set End in the DiMo panel's frame range to 57 "):
        generate_request.prepare_generate(scene, [])


@pytest.mark.parametrize("end", [48, 1])
def test_the_ranges_it_names_are_the_ones_the_engine_accepts(tmp_path, end):
    from blender_addon import generate_request
    from dimo_engine.camera import load_camera_path
    from dimo_engine.reenact import conform_camera
    from dimo_engine.video_io import resample_indices

    scene = make_shot(tmp_path, frame_end=end)
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.dimo.driving_video = str(_clip(tmp_path / "dance.mp4", 48, 24.0))
    request = generate_request.prepare_generate(scene, [])
    camera = load_camera_path(request.targets[0].camera_file)
    conform_camera(camera, resample_indices(48, 24.0, 12.0).size, 12.0)  # raises if the engine would refuse it


@pytest.mark.parametrize("camera_fps", [12.0, 24.0, 25.0, 30.0, 60.0, 8.0])
@pytest.mark.parametrize("motion", [2, 17, 24, 600])
def test_the_fitting_frame_count_is_accepted_by_conform_camera(camera_fps, motion):
    from blender_addon.core.camera_path import camera_fits_motion, camera_frames_for_motion
    from blender_addon.core.camera_rigs import static_view
    from dimo_engine.errors import InputError
    from dimo_engine.reenact import conform_camera

    count = camera_frames_for_motion(motion, 12.0, camera_fps)
    assert camera_fits_motion(count, camera_fps, motion, 12.0)
    conform_camera(static_view(0.0, 0.0, count, camera_fps, 64, 64), motion, 12.0)
    # and the rule agrees with the engine's on the neighbours
    for other in (count - 1, count + 1):
        if other < 2:
            continue
        try:
            conform_camera(static_view(0.0, 0.0, other, camera_fps, 64, 64), motion, 12.0)
            accepted = True
        except InputError:
            accepted = False
        assert camera_fits_motion(other, camera_fps, motion, 12.0) == accepted


def test_a_motion_file_and_a_zip_of_frames_are_measured_too(tmp_path):
    import io
    import zipfile

    from PIL import Image

    from blender_addon import generate_request
    from dimo_engine.pipelines import MotionTokens

    motion = tmp_path / "walk.safetensors"
    MotionTokens(torch.zeros(1, 30, 22, 4), torch.zeros(1, 30, 2, 4)).save(motion)
    assert generate_request.driving_clip_length(motion) == (30, 12.0)
    archive = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for index in range(36):
            buffer = io.BytesIO()
            Image.new("RGB", (4, 4)).save(buffer, format="PNG")
            bundle.writestr(f"{index:04d}.png", buffer.getvalue())
    assert generate_request.driving_clip_length(archive) == (36, 24.0)
    scene = make_shot(tmp_path, frame_end=250)
    scene.render.fps, scene.render.fps_base = 24, 1.0
    scene.dimo.driving_video = str(motion)
    with pytest.raises(ValueError, match="walk.safetensors lasts 2.5 s .* End frame to 60 "):
        generate_request.prepare_generate(scene, [])
    # A file Blender cannot read is left to the engine, which says what is wrong with it.
    assert generate_request.driving_clip_length(tmp_path / "shot.blend") is None
