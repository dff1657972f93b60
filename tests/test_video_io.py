"""Video and image reading/writing, driving-frame preparation and window blending."""

import numpy as np
import imageio.v3 as iio
import pytest
import torch
from PIL import Image

from dimo_engine import driving, frame_windows, person_crop, video_io
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
    assert torch.allclose(model_input[:, :, 0, 0], torch.full((4, 3), person_crop.BACKGROUND), atol=0.02)
    with pytest.raises(InputError, match="at least 2"):
        driving.prepare_driving_frames(frames[:1], 12.0, 12.0, 32, 32)


def test_windows_cover_and_blend_seamlessly():
    starts = frame_windows.overlapping_window_starts(30, 9, overlap=4)
    assert starts[0] == 0 and starts[-1] == 21 and all(b - a <= 5 for a, b in zip(starts, starts[1:]))
    signal = np.sin(np.arange(30) / 3.0)[:, None]  # (30, 1)
    chunks = [signal[s : s + 9] for s in starts]
    assert np.allclose(frame_windows.blend_windows(chunks, starts, 30, 4), signal)
    # Windows that disagree are cross-faded: the result stays between them, without jumps.
    shifted = [chunk + (i % 2) for i, chunk in enumerate(chunks)]
    blended = frame_windows.blend_windows(shifted, starts, 30, 4)
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


class _FrameReaderSpy:
    """Wraps `imageio_ffmpeg.read_frames`: records the options it was started with and counts the frames
    pulled out of it after the header."""

    def __init__(self, monkeypatch):
        self.calls, self.frames_pulled = [], 0
        original = video_io.imageio_ffmpeg.read_frames

        def spy(path, *args, **kwargs):
            self.calls.append(kwargs)
            reader = original(path, *args, **kwargs)
            yield next(reader)  # the header
            try:
                for buffer in reader:
                    self.frames_pulled += 1
                    yield buffer
            finally:
                reader.close()

        monkeypatch.setattr(video_io.imageio_ffmpeg, "read_frames", spy)


def _numbered_clip(count: int, width: int, height: int) -> np.ndarray:
    # Frame i is uniformly grey level 4 * i, so a kept frame says which source frame it was.
    return np.repeat((np.arange(count, dtype=np.uint8) * 4)[:, None, None, None], height * width * 3).reshape(
        count, height, width, 3)


def test_a_driving_video_is_decoded_scaled_down_and_at_the_model_fps(tmp_path, monkeypatch):
    path = video_io.write_video(_numbered_clip(48, 320, 180), tmp_path / "phone.mp4", fps=24)  # 2 s at 24 fps
    spy = _FrameReaderSpy(monkeypatch)
    clip = video_io.read_video_clip(path, model_fps=12.0, fit_side=64)
    # ffmpeg itself was asked for the small size; no full-size frame reached Python.
    assert "-vf" in spy.calls[0]["output_params"] and "64" in spy.calls[0]["output_params"][1]
    assert clip.frames.shape == (24, 36, 64, 3) and clip.fps == 12.0
    assert (clip.source_frames, clip.source_fps, clip.source_size) == (48, 24.0, (320, 180))
    # The kept frames are the ones resample_indices picks, so the encoders' own resampling is then the identity.
    levels = clip.frames.reshape(24, -1).mean(1) / 4
    assert np.abs(levels - driving.resample_indices(48, 24.0, 12.0)).max() < 0.6
    assert driving.resample_indices(24, clip.fps, 12.0).tolist() == list(range(24))


def test_read_driving_uses_the_encoders_size_and_keeps_alpha(tmp_path, monkeypatch):
    frames = np.zeros((6, 600, 900, 4), np.uint8)
    for index in range(6):  # moving, so the GIF writer keeps every frame
        frames[index, 100:500, 300 + 20 * index : 600 + 20 * index] = (200, 100, 50, 255)
    Image.fromarray(frames[0]).save(tmp_path / "clip.gif", save_all=True,
                                    append_images=[Image.fromarray(f) for f in frames[1:]], duration=[40] * 6,
                                    disposal=2)  # 25 fps
    clip, fps = driving.read_driving(tmp_path / "clip.gif", 12.0)
    assert clip.shape[1:] == (driving.DRIVING_SIDE * 2 // 3, driving.DRIVING_SIDE, 4)
    assert fps == 12.0 and clip.shape[0] == driving.resample_indices(6, 25.0, 12.0).size


def test_an_image_folder_reads_only_the_frames_the_model_uses(tmp_path, monkeypatch):
    for index, frame in enumerate(_numbered_clip(8, 200, 100)):
        Image.fromarray(frame).save(tmp_path / f"{index:04d}.png")
    read = []
    original = video_io.read_image
    monkeypatch.setattr(video_io, "read_image", lambda path, *a, **k: read.append(path.name) or original(path, *a, **k))
    clip = video_io.read_video_clip(tmp_path, fps=24.0, model_fps=12.0, fit_side=50)
    assert read == ["0000.png", "0002.png", "0004.png", "0006.png"]
    assert clip.frames.shape == (4, 25, 50, 3) and clip.fps == 12.0 and clip.source_frames == 8


def test_a_too_long_clip_is_refused_from_its_header_before_any_frame_is_decoded(tmp_path, monkeypatch):
    path = video_io.write_video(np.zeros((30, 16, 16, 3), np.uint8), tmp_path / "long.mp4", fps=12)  # 2.5 s
    spy = _FrameReaderSpy(monkeypatch)
    with pytest.raises(InputError, match=r"lasts 2\.5 s, 30 frames at the model's 12 fps, more than the 24 frames "
                                         r"\(2 s\) one job can generate; trim it to at most 2 s"):
        video_io.read_video_clip(path, model_fps=12.0, max_model_frames=24)
    assert spy.frames_pulled == 0
    # A folder is refused from its file count, before any image is read.
    for index in range(30):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / f"{index:04d}.png")
    monkeypatch.setattr(video_io, "read_image", lambda *a, **k: pytest.fail("an image was read"))
    with pytest.raises(InputError, match="more than the 24 frames"):
        video_io.read_video_clip(tmp_path, fps=12.0, model_fps=12.0, max_model_frames=24)


def test_a_clip_whose_header_has_no_length_stops_at_the_limit(tmp_path, monkeypatch):
    path = video_io.write_video(np.zeros((30, 16, 16, 3), np.uint8), tmp_path / "long.mp4", fps=12)
    original = video_io.imageio_ffmpeg.read_frames

    def without_duration(*args, **kwargs):
        reader = original(*args, **kwargs)
        yield {**next(reader), "duration": 0}
        yield from reader

    monkeypatch.setattr(video_io.imageio_ffmpeg, "read_frames", without_duration)
    with pytest.raises(InputError, match="lasts more than 24 frames at the model's 12 fps"):
        video_io.read_video_clip(path, model_fps=12.0, max_model_frames=24)


def test_frames_are_held_once_not_as_a_list_and_its_stack(tmp_path):
    stack = video_io._FrameStack(2, (2, 2, 3))
    for level in range(5):  # past the header's estimate: grown, every frame kept in order
        stack.append(np.full((2, 2, 3), level, np.uint8))
    assert stack.result()[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
