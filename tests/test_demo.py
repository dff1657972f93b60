"""`dimo demo` end to end with a tiny random model: Blender renders the driving clip, reference and ground
truth, the model generates from the orbiting camera, and the frames, videos and the three-column sheet
agree with each other; a folder that is not a demo's output is never touched."""

import json

import numpy as np
import pytest
from PIL import Image

from dimo_engine.camera import load_camera_path
from dimo_engine.cli.main import main
from dimo_engine.demo import CAMERA_PHRASE, DEMO_FAMILIES
from dimo_engine.frame_windows import DEFAULT_OVERLAP
from dimo_engine.pipelines import create_random_pipeline
from dimo_engine.video_io import read_video

pytestmark = [pytest.mark.blender, pytest.mark.slow]

WINDOW, SIZE = 9, 32  # the "tiny" preset's frames and image size
FRAMES = 2 * WINDOW - DEFAULT_OVERLAP  # the demo's default: two generation windows


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    create_random_pipeline(seed=0, preset="tiny").save_pretrained(folder / "model")
    out = folder / "dimo-demo"
    code = main(["demo", "--out", str(out), "--model", str(folder / "model"), "--steps", "2", "--device", "cpu"])
    return code, folder, out


def png_sequence(folder):
    paths = sorted(folder.glob("*.png"))
    assert [p.name for p in paths] == [f"{i:04d}.png" for i in range(len(paths))]
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def flat_sequence(folder):
    """A PNG sequence as the sheet shows it: a character layer (RGBA) over the models' plain grey."""
    from dimo_engine.layer_compositing import composite_layer
    from dimo_engine.video_io import to_uint8

    paths = sorted(folder.glob("*.png"))
    frames = np.stack([np.asarray(Image.open(p)) for p in paths])
    return to_uint8(composite_layer(frames.astype(np.float32) / 255.0)) if frames.shape[-1] == 4 else frames


def test_demo_writes_sequences_videos_and_record(demo_run):
    code, _, out = demo_run
    assert code == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["dimo-demo", "model"]  # no staging folder left behind
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["camera.json", "demo.json", "dimo", "dimo.mp4", "driving", "ground_truth", "reference.png",
         "side_by_side.mp4", "sheet.png"])
    sequences = {name: png_sequence(out / name) for name in ("driving", "ground_truth", "dimo")}
    for frames in sequences.values():
        assert frames.shape == (FRAMES, SIZE, SIZE, 3)
    video, fps = read_video(out / "dimo.mp4")
    assert video.shape[:3] == (FRAMES, SIZE, SIZE) and fps == pytest.approx(12.0)
    side_by_side, _ = read_video(out / "side_by_side.mp4")
    assert side_by_side.shape[:3] == (FRAMES, SIZE, 3 * SIZE)
    assert np.asarray(Image.open(out / "reference.png")).shape == (SIZE, SIZE, 4)  # alpha = the character

    record = json.loads((out / "demo.json").read_text())
    assert record["trained"] is True and record["num_frames"] == FRAMES
    assert record["motion"]["family"] in DEMO_FAMILIES and record["motion"]["seed"] >= 1_000_000  # test split
    assert record["driving_appearance_seed"] != record["reference_appearance_seed"]
    stages = ["load model", "body model", "plan clips", "render", "encode motion", "generate", "write"]
    assert list(record["stage_seconds"]) == stages
    assert record["total_seconds"] >= sum(record["stage_seconds"].values()) - 0.05  # each rounded to 0.01 s


def test_demo_rendered_two_characters_doing_the_motion(demo_run):
    _, _, out = demo_run
    driving, ground_truth = png_sequence(out / "driving"), png_sequence(out / "ground_truth")
    reference = np.asarray(Image.open(out / "reference.png"))[..., :3].astype(float)
    # The person moves in both renders (the sets are static, the driving view at most hand-held)...
    assert np.abs(np.diff(driving.astype(float), axis=0)).mean() > 0.5
    assert np.abs(np.diff(ground_truth.astype(float), axis=0)).mean() > 0.5
    # ...and the reference is another character and set than the driving clip, seen from the front.
    assert np.abs(reference - driving[0].astype(float)).mean() > 10.0


def test_demo_camera_orbits_a_quarter_turn_while_dollying_in(demo_run):
    _, _, out = demo_run
    camera = load_camera_path(out / "camera.json")
    assert camera.num_frames == FRAMES and (camera.width, camera.height) == (SIZE, SIZE)
    record = json.loads((out / "demo.json").read_text())
    assert record["camera_phrase"] == CAMERA_PHRASE
    # Every camera looks at one point; the turn and the distance are measured around it.
    centres, forward = camera.centers, camera.world_to_camera[:, 2, :3]
    target = np.linalg.lstsq(np.concatenate([np.eye(3) - np.outer(f, f) for f in forward]),
                             np.concatenate([(np.eye(3) - np.outer(f, f)) @ c for f, c in zip(forward, centres)]),
                             rcond=None)[0]
    start, end = centres[0, :2] - target[:2], centres[-1, :2] - target[:2]
    turn = np.degrees(np.arctan2(start[0] * end[1] - start[1] * end[0], start @ end))
    assert abs(abs(turn) - 90.0) < 3.0
    assert np.linalg.norm(centres[-1] - target) < 0.8 * np.linalg.norm(centres[0] - target)


def test_demo_sheet_has_driving_ground_truth_and_dimo_columns(demo_run):
    _, _, out = demo_run
    record = json.loads((out / "demo.json").read_text())
    layout = record["sheet"]
    assert layout["columns"] == ["driving", "ground truth", "DiMo"]
    rows, header = layout["frames"], layout["header_px"]
    assert rows[0] == 0 and rows[-1] == FRAMES - 1 and len(rows) > 1
    sheet = np.asarray(Image.open(out / "sheet.png").convert("RGB"))
    assert sheet.shape == (header + len(rows) * SIZE, 3 * SIZE, 3)
    # The driving clip as filmed; the ground truth's person and the model's layer over the same grey.
    for column, name in enumerate(("driving", "ground_truth", "dimo")):
        frames = png_sequence(out / name) if name == "driving" else flat_sequence(out / name)
        for row, frame in enumerate(rows):
            cell = sheet[header + row * SIZE: header + (row + 1) * SIZE, column * SIZE: (column + 1) * SIZE]
            assert np.array_equal(cell, frames[frame]), (name, frame)


def test_demo_replaces_its_own_output_but_refuses_other_folders(demo_run, tmp_path, capsys):
    _, folder, _ = demo_run
    out = tmp_path / "again"
    assert main(["demo", "--out", str(out), "--model", str(folder / "model"), "--steps", "1", "--frames", "5"]) == 0
    assert main(["demo", "--out", str(out), "--model", str(folder / "model"), "--steps", "1", "--frames", "6",
                 "--seed", "3"]) == 0
    record = json.loads((out / "demo.json").read_text())
    assert record["seed"] == 3 and len(png_sequence(out / "dimo")) == 6
    printed = capsys.readouterr().out
    for stage in ("render", "generate", "total"):
        assert f"  {stage} " in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # the earlier output went, nothing half-made left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    capsys.readouterr()
    code = main(["demo", "--out", str(foreign), "--model", str(folder / "model"), "--steps", "1"])
    assert code == 2
    assert "not a dimo demo's output" in capsys.readouterr().err
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    for bad, named in ((["--frames", "1"], "--frames"), (["--steps", "0"], "num_inference_steps")):
        assert main(["demo", "--out", str(tmp_path / "bad"), "--model", str(folder / "model"), *bad]) == 2
        assert named in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "mine"]


def test_demo_without_default_model_says_so_and_uses_an_untrained_one(monkeypatch, tmp_path):
    from dimo_engine.cli import model_args
    from dimo_engine.demo import DemoSettings, load_demo_model

    monkeypatch.setattr(model_args, "DEFAULT_MODEL_DIR", tmp_path / "weights" / "default")
    lines = []
    pipe, description, trained = load_demo_model(DemoSettings(device="cpu"), lines.append)
    assert trained is False and "untrained" in description
    assert len(lines) == 1 and "no default model" in lines[0] and "UNTRAINED" in lines[0]
    assert (pipe.config.height, pipe.config.num_frames) == (128, 17)  # the default model's size
