"""Camera phrases: each move does what it says, clauses combine, bad phrases are explained, and
`dimo camera` writes the file."""

import math

import numpy as np
import pytest

from blender_addon.core.camera_path import load_camera_path, validate_camera_path
from blender_addon.core.camera_phrases import GRAMMAR, PhraseMove, camera_path_from_phrase, parse_camera_phrase

TARGET = np.array([0.0, 0.0, 0.95])


def phrase_path(phrase, **kwargs):
    settings = dict(num_frames=9, fps=12.0, width=96, height=64)
    camera_path = camera_path_from_phrase(phrase, **{**settings, **kwargs})
    return validate_camera_path(camera_path)


def azimuth_deg(point):
    """0 in front of the character (-Y), 90 on its left (+X)."""
    return math.degrees(math.atan2(point[0], -point[1]))


def forward(camera_path, index):
    return camera_path.world_to_camera[index, 2, :3]


def target_pixel(camera_path):
    uv, _ = camera_path.project(TARGET[None])
    return uv[:, 0]


def test_orbit_left_90_ends_90_degrees_around_on_the_cameras_left():
    camera_path = phrase_path("orbit left 90 degrees")
    start, end = camera_path.centers[0] - TARGET, camera_path.centers[-1] - TARGET
    assert azimuth_deg(start) == pytest.approx(0.0, abs=1e-9)
    assert azimuth_deg(end) == pytest.approx(-90.0, abs=1e-6)
    assert np.linalg.norm(end) == pytest.approx(np.linalg.norm(start))
    # "Left" is the camera's own left at the start (negative x in its image).
    start_right = camera_path.world_to_camera[0, 0, :3]
    assert np.dot(end - start, start_right) < -1.0
    np.testing.assert_allclose(target_pixel(camera_path), [[48.0, 32.0]] * 9, atol=1e-6)  # still on the subject
    assert azimuth_deg(phrase_path("arc right 45°").centers[-1] - TARGET) == pytest.approx(45.0, abs=1e-6)
    # The motion eases in and out: the middle frame is half-way round.
    assert azimuth_deg(camera_path.centers[4] - TARGET) == pytest.approx(-45.0, abs=1e-6)


def test_dolly_changes_distance_and_keeps_direction():
    distances = np.linalg.norm(phrase_path("dolly in", distance=4.0).centers - TARGET, axis=1)
    assert distances[0] == pytest.approx(4.0) and distances[-1] == pytest.approx(4.0 * 0.6)
    assert np.all(np.diff(distances) <= 1e-12)
    distances = np.linalg.norm(phrase_path("dolly out 1.5 m").centers - TARGET, axis=1)
    assert distances[-1] - distances[0] == pytest.approx(1.5)
    assert parse_camera_phrase("push in") == parse_camera_phrase("dolly in")
    assert parse_camera_phrase("pull back 2 m") == [PhraseMove("dolly", "out", 2.0)]
    with pytest.raises(ValueError, match="would reach the subject"):
        phrase_path("dolly in 5 m", distance=3.0)


def test_crane_pedestal_and_truck():
    crane = phrase_path("crane up 1 m")
    assert crane.centers[-1, 2] - crane.centers[0, 2] == pytest.approx(1.0)
    np.testing.assert_allclose(target_pixel(crane), [[48.0, 32.0]] * 9, atol=1e-6)  # keeps looking at the subject
    assert forward(crane, -1)[2] < forward(crane, 0)[2] - 0.1  # so it tilts down

    pedestal = phrase_path("pedestal down 40 cm")
    assert pedestal.centers[-1, 2] - pedestal.centers[0, 2] == pytest.approx(-0.4)
    np.testing.assert_allclose(pedestal.world_to_camera[:, :3, :3], pedestal.world_to_camera[:1, :3, :3].repeat(9, 0),
                               atol=1e-12)  # no rotation

    truck = phrase_path("truck right 2 m", azimuth_deg=30.0)
    moved = truck.centers[-1] - truck.centers[0]
    assert np.dot(moved, truck.world_to_camera[0, 0, :3]) == pytest.approx(2.0)  # along its own right
    assert moved[2] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(truck.world_to_camera[:, :3, :3], truck.world_to_camera[:1, :3, :3].repeat(9, 0),
                               atol=1e-12)


def test_tilt_pan_zoom_turn_in_place():
    for phrase in ("tilt up 20 degrees", "pan left 30 deg", "zoom in 2x"):
        camera_path = phrase_path(phrase)
        np.testing.assert_allclose(camera_path.centers, camera_path.centers[:1].repeat(9, 0), atol=1e-12)
    tilt = phrase_path("tilt up 20 degrees", elevation_deg=0.0)
    pitch = [math.degrees(math.asin(forward(tilt, index)[2])) for index in (0, -1)]
    assert pitch[1] - pitch[0] == pytest.approx(20.0)
    pan = phrase_path("pan left 30 deg", elevation_deg=0.0)
    start, end = forward(pan, 0), forward(pan, -1)
    assert math.degrees(math.acos(np.clip(np.dot(start, end), -1, 1))) == pytest.approx(30.0)
    assert np.dot(end, pan.world_to_camera[0, 0, :3]) < 0  # turned to the left
    assert abs(pan.world_to_camera[-1, 0, 2]) < 1e-9  # the horizon stays level
    pan_right = phrase_path("pan right 30 deg", elevation_deg=0.0)
    assert np.dot(forward(pan_right, -1), pan_right.world_to_camera[0, 0, :3]) > 0
    zoom = phrase_path("zoom in 2x")
    assert zoom.K[-1, 0, 0] == pytest.approx(2.0 * zoom.K[0, 0, 0])
    assert phrase_path("zoom out 2 times").K[-1, 1, 1] == pytest.approx(zoom.K[0, 1, 1] / 2.0)


def test_static_and_handheld():
    static = phrase_path("static")
    np.testing.assert_array_equal(static.world_to_camera, static.world_to_camera[:1].repeat(9, 0))
    handheld = phrase_path("handheld", num_frames=24, seed=3)
    steps = np.linalg.norm(np.diff(handheld.centers, axis=0), axis=1)
    assert 1e-4 < steps.max() < 0.03
    np.testing.assert_array_equal(phrase_path("handheld", num_frames=24, seed=3).world_to_camera,
                                  handheld.world_to_camera)
    assert not np.allclose(phrase_path("handheld", num_frames=24, seed=4).world_to_camera, handheld.world_to_camera)


def test_clauses_combine():
    phrases = ["orbit left 90 degrees while dolly in 1 m", "orbit left 90 degrees and dolly in 1 m",
               "Orbit left 90 degrees, dolly in 1m", "slowly orbit the camera left by 90 degrees while dolly in 100 cm"]
    paths = [phrase_path(phrase, distance=3.0) for phrase in phrases]
    end = paths[0].centers[-1] - TARGET
    assert azimuth_deg(end) == pytest.approx(-90.0, abs=1e-6)
    assert np.linalg.norm(end) == pytest.approx(2.0)
    for other in paths[1:]:
        np.testing.assert_allclose(other.world_to_camera, paths[0].world_to_camera, atol=1e-12)
    assert parse_camera_phrase("crane up while zoom in, handheld") == [
        PhraseMove("crane", "up", None), PhraseMove("zoom", "in", None), PhraseMove("handheld", "", None)]


def test_frames_and_sizes():
    camera_path = phrase_path("orbit right 30 degrees", num_frames=5, frames=np.arange(101, 106), width=64, height=32)
    assert camera_path.frames.tolist() == [101, 102, 103, 104, 105]
    assert (camera_path.width, camera_path.height, camera_path.fps) == (64, 32, 12.0)
    assert phrase_path("orbit left", num_frames=1).num_frames == 1


@pytest.mark.parametrize(("phrase", "problem"), [
    ("spin around", "unknown word 'spin'"),
    ("orbit 90 degrees", "'orbit' needs a direction"),
    ("dolly in 30 degrees", "measured in metres, not degrees"),
    ("tilt up 10 m", "measured in degrees, not metres"),
    ("orbit left 90 degrees then dolly in", "unknown word 'then'"),
    ("static 5", "takes no number"),
    ("zoom in 2x!", "cannot read '!'"),
    ("", "the phrase is empty"),
    ("while", "no camera move"),
])
def test_bad_phrases_name_the_phrase_and_list_the_grammar(phrase, problem):
    with pytest.raises(ValueError) as error:
        parse_camera_phrase(phrase)
    message = str(error.value)
    assert message.startswith(f"camera phrase '{phrase}': ") and problem in message and GRAMMAR in message


def test_engine_wrapper_and_cli(tmp_path, capsys):
    from dimo_engine.camera import camera_path_from_phrase as engine_from_phrase
    from dimo_engine.cli.main import main
    from dimo_engine.errors import InputError

    with pytest.raises(InputError, match="unknown word 'spin'"):
        engine_from_phrase("spin", num_frames=4, fps=12.0, width=64, height=64)

    out = tmp_path / "shots" / "orbit.json"
    code = main(["camera", "--phrase", "orbit left 90 degrees", "--out", str(out), "--frames", "5", "--fps", "8",
                 "--width", "64", "--height", "48", "--distance", "4"])
    assert code == 0 and "wrote" in capsys.readouterr().out
    camera_path = load_camera_path(out)
    assert camera_path.num_frames == 5 and (camera_path.width, camera_path.height, camera_path.fps) == (64, 48, 8.0)
    assert azimuth_deg(camera_path.centers[-1] - TARGET) == pytest.approx(-90.0, abs=1e-6)
    assert np.linalg.norm(camera_path.centers[0] - TARGET) == pytest.approx(4.0)

    bad = tmp_path / "bad.json"
    assert main(["camera", "--phrase", "spin left", "--out", str(bad)]) == 2
    assert "unknown word 'spin'" in capsys.readouterr().err
    assert not bad.exists()
