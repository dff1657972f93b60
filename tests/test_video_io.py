"""Video and image reading/writing, driving-frame preparation and window blending."""

import numpy as np
import imageio.v3 as iio
import pytest
import torch
from PIL import Image

from dimo_engine import driving, video_io
from dimo_engine.errors import InputError


def moving_square(num_frames=10, height=48, width=64):
    """A bright square travelling right on a dark background: (F, H, W, 3) uint8."""
    frames = np.full((num_frames, height, width, 3), 20, np.uint8)
    for index in range(num_frames):
        x = 4 + 4 * index
        frames[index, 16:32, x : x + 12] = (230, 200, 40)
    return frames


def test_mp4_round_trip_keeps_size_count_fps_and_content(tmp_path):
    frames = moving_square()
    path = video_io.write_video(frames, tmp_path / "clip.mp4", fps=15)
    decoded, fps = video_io.read_video(path)
    assert decoded.shape == frames.shape and fps == pytest.approx(15.0)
    # Lossy codec: the square is still where it was, within a few grey levels on average.
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 6
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left behind


def test_gif_and_png_folder_keep_alpha(tmp_path):
    rgba = np.zeros((3, 32, 32, 4), np.uint8)
    for index in range(3):
        rgba[index, 8:20, 4 + 4 * index : 14 + 4 * index] = (200, 30, 30, 255)
    iio.imwrite(tmp_path / "clip.gif", rgba, duration=50, loop=0)
    frames, fps = video_io.read_video(tmp_path / "clip.gif")
    assert frames.shape == (3, 32, 32, 4) and fps == pytest.approx(20.0)
    assert frames[0, 10, 5, 3] == 255 and frames[0, 0, 0, 3] == 0

    folder = tmp_path / "frames"
    names = video_io.write_png_sequence(rgba, folder)
    assert names == ["0000.png", "0001.png", "0002.png"]
    frames, fps = video_io.read_video(folder, fps=12)
    assert fps == 12.0 and np.array_equal(frames, rgba)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "single_image", "unknown_type", "empty_folder", "huge"])
def test_bad_driving_inputs_are_one_clear_sentence(tmp_path, case):
    path = tmp_path / "clip.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("this is not a video\n")
    elif case == "single_image":
        path = tmp_path / "still.png"
        Image.new("RGB", (16, 16)).save(path)
    elif case == "unknown_type":
        path = tmp_path / "clip.txt"
        path.write_text("x")
    elif case == "empty_folder":
        path = tmp_path / "frames"
        path.mkdir()
    elif case == "huge":
        path = tmp_path / "frames"
        path.mkdir()
        Image.new("RGB", (20000, 8)).save(path / "0000.png")
    with pytest.raises(InputError) as error:
        video_io.read_video(path)
    message = str(error.value)
    assert str(path.name) in message and message.count(". ") == 0 and "\n" not in message


def test_reference_image_limits(tmp_path):
    Image.new("RGB", (20000, 4)).save(tmp_path / "wide.png")
    with pytest.raises(InputError, match="20000x4 pixels"):
        video_io.read_image(tmp_path / "wide.png")
    (tmp_path / "fake.png").write_text("not an image")
    with pytest.raises(InputError, match="cannot be read as an image"):
        video_io.read_image(tmp_path / "fake.png")


def test_resampling_keeps_duration():
    indices = driving.resample_indices(60, 30.0, 12.0)  # 2 s of video
    assert indices.size == 24 and indices[0] == 0 and indices[-1] <= 59
    assert np.all(np.diff(indices) > 0)
    assert driving.resample_indices(5, 12.0, 12.0).tolist() == [0, 1, 2, 3, 4]


def test_alpha_crop_centres_the_person():
    frames = np.zeros((4, 100, 200, 4), np.uint8)
    frames[:, 40:80, 150:170] = (255, 255, 255, 255)  # a white "person" on the right
    model_input = driving.prepare_driving_frames(frames, 12.0, 12.0, 32, 32)
    assert model_input.shape == (4, 3, 32, 32)
    # The person fills the middle of the crop; the corners are the neutral background.
    assert model_input[:, :, 16, 16].min() > 0.95
    assert torch.allclose(model_input[:, :, 0, 0], torch.full((4, 3), driving.BACKGROUND), atol=0.02)
    with pytest.raises(InputError, match="at least 2"):
        driving.prepare_driving_frames(frames[:1], 12.0, 12.0, 32, 32)


def test_windows_cover_and_blend_seamlessly():
    starts = driving.window_starts(30, 9, overlap=4)
    assert starts[0] == 0 and starts[-1] == 21 and all(b - a <= 5 for a, b in zip(starts, starts[1:]))
    signal = np.sin(np.arange(30) / 3.0)[:, None]  # (30, 1)
    chunks = [signal[s : s + 9] for s in starts]
    assert np.allclose(driving.blend_windows(chunks, starts, 30, 4), signal)
    # Windows that disagree are cross-faded: the result stays between them, without jumps.
    shifted = [chunk + (i % 2) for i, chunk in enumerate(chunks)]
    blended = driving.blend_windows(shifted, starts, 30, 4)
    assert np.abs(np.diff(blended[:, 0] - signal[:, 0])).max() < 0.5


def test_an_image_over_pillows_pixel_limit_says_it_is_too_large(tmp_path):
    Image.new("1", (14000, 14000)).save(tmp_path / "poster.png")  # 196 M pixels: Pillow refuses to open it
    with pytest.raises(InputError, match=r"poster.png has more pixels than .*; scale it down to at most 8192 px") as error:
        video_io.read_image(tmp_path / "poster.png")
    assert "save it again" not in str(error.value)


def test_a_still_image_given_as_the_driving_video_is_named_a_still_image(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "pose.png")
    (tmp_path / "pose.mp4").write_bytes((tmp_path / "pose.png").read_bytes())  # renamed: ffmpeg decodes one frame
    for name in ("pose.png", "pose.mp4"):
        with pytest.raises(InputError, match=f"{name} is a still image, not a video"):
            video_io.read_video(tmp_path / name)


def test_a_too_short_clip_says_what_is_needed():
    with pytest.raises(InputError, match=r"has 2 frame\(s\) at 24 fps, which is 1 at the model's 12 fps, and motion "
                                         r"needs at least 2 frames at 12 fps; give at least 3 frames at 24 fps"):
        driving.check_driving_length(2, 24.0, 12.0)
    assert driving.check_driving_length(3, 24.0, 12.0) == 2
