"""`dimo generate`, `dimo encode-motion` and `dimo info` end to end with a tiny random model, and every
kind of bad input answered with one sentence, exit code 2 and nothing written."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from blender_addon.core.camera_rigs import static_view
from dimo_engine.camera import camera_path_to_dict, load_camera_path, save_camera_path
from dimo_engine.cli.main import main
from dimo_engine.pipelines import create_random_pipeline
from dimo_engine.video_io import read_video, write_video

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    create_random_pipeline(seed=0, preset="tiny").save_pretrained(folder / "model")
    frames = np.full((12, 40, 48, 3), 25, np.uint8)
    for index in range(12):
        frames[index, 8:36, 10 + index : 22 + index] = (220, 180, 60)
    write_video(frames, folder / "drive.mp4", fps=12)
    Image.fromarray(np.full((40, 40, 3), 140, np.uint8)).save(folder / "ref.png")
    save_camera_path(static_view(30.0, 10.0, 12, 12.0, 64, 64), folder / "orbit.json")
    # The same 1 s at 24 fps: resampled to the model's 12 fps.
    save_camera_path(static_view(90.0, 0.0, 23, 24.0, 64, 64), folder / "side_24fps.json")
    return folder


def generate(files, out, *extra):
    return main(["generate", "--reference", str(files / "ref.png"), "--out", str(out), "--model", str(files / "model"),
                 "--steps", "2", *extra])


def test_generate_writes_frames_video_and_camera_per_camera(files, tmp_path):
    out = tmp_path / "out"
    code = generate(files, out, "--driving", str(files / "drive.mp4"), "--camera", str(files / "orbit.json"),
                    "--camera", str(files / "side_24fps.json"), "--camera-phrase", "orbit left 90 degrees")
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["camera_00", "camera_01", "camera_02"]  # no partial folders left
    for index in range(3):
        folder = out / f"camera_{index:02d}"
        pngs = sorted(folder.glob("*.png"))
        assert [p.name for p in pngs] == [f"{i:04d}.png" for i in range(12)]
        assert np.asarray(Image.open(pngs[0])).shape == (32, 32, 3)
        video, fps = read_video(folder / "video.mp4")
        assert video.shape[:3] == (12, 32, 32) and fps == pytest.approx(12.0)
        camera = load_camera_path(folder / "camera.json")
        assert camera.num_frames == 12 and camera.fps == 12.0
    # The 24 fps camera kept every other frame of its own path.
    source = load_camera_path(files / "side_24fps.json")
    assert np.allclose(load_camera_path(out / "camera_01" / "camera.json").world_to_camera, source.world_to_camera[::2])
    # The phrase camera moves: its centre travels a quarter turn around the character.
    centers = load_camera_path(out / "camera_02" / "camera.json").centers
    start, end = centers[0, :2], centers[-1, :2]
    assert abs(np.degrees(np.arccos(start @ end / np.linalg.norm(start) / np.linalg.norm(end))) - 90.0) < 5.0


def test_encoded_motion_reproduces_the_driving_video_result(files, tmp_path):
    motion = tmp_path / "motion.safetensors"
    assert main(["encode-motion", str(files / "drive.mp4"), "--out", str(motion), "--model", str(files / "model")]) == 0
    assert motion.is_file() and not list(tmp_path.glob(".*"))
    camera = ["--camera", str(files / "orbit.json"), "--no-video", "--seed", "3"]
    assert generate(files, tmp_path / "a", "--driving", str(files / "drive.mp4"), *camera) == 0
    assert generate(files, tmp_path / "b", "--motion", str(motion), *camera) == 0
    for name in ("0000.png", "0011.png"):
        a = np.asarray(Image.open(tmp_path / "a" / "camera_00" / name))
        b = np.asarray(Image.open(tmp_path / "b" / "camera_00" / name))
        assert np.array_equal(a, b)
    assert not (tmp_path / "b" / "camera_00" / "video.mp4").exists()


def test_info_reports_model_device_dtype_and_memory(files, capsys):
    assert main(["info", "--model", str(files / "model"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "cpu" and report["dtype"] == "float32" and report["num_frames"] == 9
    assert report["parameters"]["transformer"] > 0 and report["process_peak_rss_mib"] > 0


def _camera_file(files, tmp_path, edit):
    data = camera_path_to_dict(load_camera_path(files / "orbit.json"))
    edit(data)
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "camera.json"
    path.write_text(json.dumps(data))
    return path


def _bad_inputs(files, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    single = tmp_path / "single"
    single.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(single / "0000.png")
    (tmp_path / "text.mp4").write_text("not a video at all\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    Image.new("RGB", (20000, 4)).save(tmp_path / "huge.png")
    drive, orbit = str(files / "drive.mp4"), str(files / "orbit.json")
    nan = _camera_file(files, tmp_path, lambda d: d["frames"][2]["K"][0].__setitem__(0, float("nan")))

    def far(data):
        for frame in data["frames"]:
            frame["world_to_camera"][2][3] = 1e30  # 1e30 m straight ahead

    def turned_away(data):  # same camera centre, looking the other way
        for frame in data["frames"]:
            for row in (0, 2):
                frame["world_to_camera"][row] = [-value for value in frame["world_to_camera"][row]]

    far, turned_away = (_camera_file(files, tmp_path / name, edit) for name, edit in (("far", far), ("away", turned_away)))
    return {
        "unreadable video": (["--driving", str(tmp_path / "noise.mp4"), "--camera", orbit], "cannot be decoded"),
        "empty video": (["--driving", str(tmp_path / "empty.mp4"), "--camera", orbit], "empty"),
        "text named .mp4": (["--driving", str(tmp_path / "text.mp4"), "--camera", orbit], "cannot be decoded"),
        "zero frames": (["--driving", str(frames), "--camera", orbit], "no PNG/JPEG"),
        "one frame": (["--driving", str(single), "--camera", orbit], "at least 2"),
        "20000 px image": (["--driving", drive, "--camera", orbit, "--reference", str(tmp_path / "huge.png")], "20000x4"),
        "camera with NaN": (["--driving", drive, "--camera", str(nan)], "non-finite"),
        "camera 1e30 m away": (["--driving", drive, "--camera", str(far)], "too far away for the character to cover one pixel in every frame (0-11)"),
        "character behind the camera": (["--driving", drive, "--camera", str(turned_away)], "behind the camera in every frame"),
        "frame-count mismatch": (["--driving", drive, "--camera", "MISMATCH"], "12 frames"),
        "unknown phrase": (["--driving", drive, "--camera-phrase", "moonwalk sideways into the sunset"], "moonwalk"),
        "missing model": (["--driving", drive, "--camera", orbit, "--model", str(tmp_path / "nowhere")], "model_index.json"),
        "no camera": (["--driving", drive], "no camera"),
    }


@pytest.mark.parametrize("case", ["unreadable video", "empty video", "text named .mp4", "zero frames", "one frame",
                                  "20000 px image", "camera with NaN", "camera 1e30 m away", "character behind the camera",
                                  "non-rigid camera", "frame-count mismatch",
                                  "unknown phrase", "missing model", "no camera"])
def test_bad_input_exits_2_with_one_sentence_and_writes_nothing(files, tmp_path, capsys, case):
    if case == "non-rigid camera":
        def shear(data):
            data["frames"][5]["world_to_camera"][1][0] += 0.2
        arguments, words = ["--driving", str(files / "drive.mp4"), "--camera", str(_camera_file(files, tmp_path, shear))], "non-rigid"
    else:
        arguments, words = _bad_inputs(files, tmp_path)[case]
    if "MISMATCH" in arguments:
        short = tmp_path / "short.json"
        save_camera_path(load_camera_path(files / "orbit.json").take(np.arange(7)), short)
        arguments[arguments.index("MISMATCH")] = str(short)
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(["generate", "--reference", str(files / "ref.png"), "--out", str(out), "--model", str(files / "model"),
                 "--steps", "1", *arguments])
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2, error
    assert error.startswith("dimo generate: error: ") and words in error
    assert not out.exists() or not any(out.iterdir())


def _damage(model, case):
    if case == "empty model_index.json":
        (model / "model_index.json").write_text("")
    elif case == "another pipeline":
        index = json.loads((model / "model_index.json").read_text())
        index["_class_name"] = "StableDiffusionPipeline"
        (model / "model_index.json").write_text(json.dumps(index))
    elif case == "missing component":
        shutil.rmtree(model / "hand_encoder")
    elif case == "truncated safetensors":
        weights = model / "transformer" / "diffusion_pytorch_model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


@pytest.mark.parametrize("case, words", [("empty model_index.json", "model_index.json is empty"),
                                         ("another pipeline", "StableDiffusionPipeline"),
                                         ("missing component", "'hand_encoder' component is missing"),
                                         ("truncated safetensors", "truncated")])
@pytest.mark.parametrize("command", ["generate", "info", "serve"])
def test_a_damaged_or_foreign_model_folder_exits_2_with_one_sentence(files, tmp_path, capsys, case, words, command):
    model = tmp_path / "model"
    shutil.copytree(files / "model", model)
    _damage(model, case)
    arguments = {
        "generate": ["generate", "--reference", str(files / "ref.png"), "--out", str(tmp_path / "out"),
                     "--driving", str(files / "drive.mp4"), "--camera", str(files / "orbit.json")],
        "info": ["info"],
        "serve": ["serve", "--port", "0", "--token-file", str(tmp_path / "serve.json"), "--work-dir", str(tmp_path / "w")],
    }[command]
    capsys.readouterr()
    code = main([*arguments, "--model", str(model)])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1, error
    assert error[0].startswith(f"dimo {command}: error: model folder {model}") and words in error[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "serve.json").exists()


def test_an_output_folder_never_mixes_runs(files, tmp_path, capsys):
    out = tmp_path / "out"
    drive = ["--driving", str(files / "drive.mp4"), "--no-video"]
    assert generate(files, out, *drive, "--camera", str(files / "orbit.json"), "--camera", str(files / "side_24fps.json")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["camera_00", "camera_01"]
    # A run killed with -9 left its hidden result set (and a half-swapped previous set) beside --out.
    for leftover in (tmp_path / ".out.partial" / "camera_07", tmp_path / ".out.old" / "camera_03"):
        leftover.mkdir(parents=True)
    assert generate(files, out, *drive, "--camera-phrase", "orbit left 90 degrees") == 0
    assert sorted(p.name for p in out.iterdir()) == ["camera_00"]  # the old camera_01 went with its run
    centers = load_camera_path(out / "camera_00" / "camera.json").centers
    assert not np.allclose(centers[0], centers[-1])  # the moving phrase camera, not the static orbit.json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no hidden partial or old set left behind

    # A folder holding anything else is refused, and left as it was.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    capsys.readouterr()
    assert generate(files, mine, *drive, "--camera", str(files / "orbit.json")) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_clip_longer_than_a_job_is_refused_before_decoding_and_before_the_model_loads(files, tmp_path, capsys,
                                                                                         monkeypatch):
    from dimo_engine import pipelines, video_io
    from dimo_engine.driving import MAX_MOTION_FRAMES

    seconds = MAX_MOTION_FRAMES / 12 + 1
    write_video(np.zeros((int(seconds * 12), 16, 16, 3), np.uint8), tmp_path / "long.mp4", fps=12)
    pulled = []
    original = video_io.imageio_ffmpeg.read_frames

    def spy(*args, **kwargs):
        reader = original(*args, **kwargs)
        yield next(reader)
        for buffer in reader:
            pulled.append(1)
            yield buffer

    monkeypatch.setattr(video_io.imageio_ffmpeg, "read_frames", spy)
    monkeypatch.setattr(pipelines, "load_pipeline", lambda *a, **k: pytest.fail("the model was loaded"))
    capsys.readouterr()
    code = generate(files, tmp_path / "out", "--driving", str(tmp_path / "long.mp4"), "--camera", str(files / "orbit.json"))
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and f"lasts {seconds:.1f} s" in error and "trim it to at most 50 s" in error, error
    assert pulled == []


def test_generate_hands_the_encoders_frames_at_their_size_and_fps(files, tmp_path, monkeypatch):
    from dimo_engine import driving

    frames = np.full((24, 720, 1280, 3), 25, np.uint8)  # 1 s of 720p at 24 fps
    for index in range(24):
        frames[index, 100:600, 300 + 10 * index : 500 + 10 * index] = (220, 180, 60)
    write_video(frames, tmp_path / "hd.mp4", fps=24)
    seen = []
    original = driving.encode_driving
    monkeypatch.setattr(driving, "encode_driving", lambda pipe, clip, fps, **kw: seen.append((clip.shape, fps))
                        or original(pipe, clip, fps, **kw))
    assert generate(files, tmp_path / "out", "--driving", str(tmp_path / "hd.mp4"), "--camera",
                    str(files / "orbit.json"), "--no-video") == 0
    assert seen == [((12, 288, 512, 3), 12.0)]
