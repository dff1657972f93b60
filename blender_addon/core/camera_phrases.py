"""Text camera phrases ("orbit left 90 degrees while dolly in") turned into explicit camera paths in
the character frame, for the `dimo camera` command and the add-on's "Camera from phrase" operator.

numpy only; bad phrases raise ValueError naming the phrase and listing the grammar (the engine
turns it into InputError). The grammar with examples is documented in docs/cameras.md.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from .camera_path import CameraPath
from .camera_rigs import CameraTrajectory, apply_move, ease

GRAMMAR = (
    "clauses joined by 'while', 'and' or ',' all happen together; each clause is one of "
    "'orbit|arc left|right [N degrees]', 'dolly in|out [N m]', 'truck left|right [N m]', "
    "'pedestal up|down [N m]', 'crane up|down [N m]', 'tilt up|down [N degrees]', "
    "'pan left|right [N degrees]', 'zoom in|out [N x]', 'static', 'handheld'"
)

# verb -> (canonical move, allowed directions, unit kind, default amount)
VERBS = {
    "orbit": ("orbit", ("left", "right"), "degrees", 90.0),
    "dolly": ("dolly", ("in", "out"), "metres", None),  # default: 40 % of the distance
    "truck": ("truck", ("left", "right"), "metres", 1.0),
    "pedestal": ("pedestal", ("up", "down"), "metres", 0.5),
    "crane": ("crane", ("up", "down"), "metres", 1.0),
    "tilt": ("tilt", ("up", "down"), "degrees", 20.0),
    "pan": ("pan", ("left", "right"), "degrees", 30.0),
    "zoom": ("zoom", ("in", "out"), "times", 1.5),
    "static": ("static", (), None, None),
    "handheld": ("handheld", (), None, 1.0),
}
VERB_SYNONYMS = {"arc": "orbit", "boom": "crane", "still": "static", "locked": "static", "push": "dolly",
                 "pull": "dolly"}
DIRECTION_SYNONYMS = {"back": "out", "backward": "out", "forward": "in", "closer": "in", "away": "out"}
UNITS = {
    "degrees": "degrees", "degree": "degrees", "deg": "degrees", "°": "degrees",
    "m": "metres", "meter": "metres", "meters": "metres", "metre": "metres", "metres": "metres",
    "cm": "centimetres", "x": "times", "times": "times",
}
SEPARATORS = {"while", "and", ","}
FILLER = {"the", "camera", "a", "by", "slowly", "slow", "around", "to", "of", "off", "shot", "smoothly", "gently",
          "subject", "character", "person"}
TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([a-z]+)|(°|,))", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class PhraseMove:
    """One parsed clause: the move, its direction ('' if none) and its size in the move's unit
    (degrees, metres or a zoom factor; None means the default)."""

    move: str
    direction: str
    amount: float | None


def _error(phrase: str, problem: str) -> ValueError:
    return ValueError(f"camera phrase '{phrase}': {problem}; {GRAMMAR}")


def _tokens(phrase: str) -> list[str]:
    tokens, position, text = [], 0, phrase.strip()
    while position < len(text):
        match = TOKEN.match(text, position)
        if match is None or match.end() == position:
            rest = text[position:].strip()
            if not rest:
                break
            raise _error(phrase, f"cannot read '{rest.split()[0]}'")
        tokens.append((match.group(1) or match.group(2) or match.group(3)).lower())
        position = match.end()
    return tokens


def _parse_clause(phrase: str, words: list[str]) -> PhraseMove:
    words = [word for word in words if word not in FILLER]
    if not words:
        raise _error(phrase, "a clause has no camera move")
    verb = VERB_SYNONYMS.get(words[0], words[0])
    if verb not in VERBS:
        raise _error(phrase, f"unknown word '{words[0]}'")
    move, directions, unit_kind, _default = VERBS[verb]
    rest = words[1:]
    direction = ""
    if words[0] == "push":
        direction = "in"
    elif words[0] == "pull":
        direction = "out"
    if directions and not direction:
        candidate = DIRECTION_SYNONYMS.get(rest[0], rest[0]) if rest else None
        if candidate not in directions:
            found = f"'{rest[0]}'" if rest else "nothing"
            raise _error(phrase, f"'{words[0]}' needs a direction ({' or '.join(directions)}), got {found}")
        direction, rest = candidate, rest[1:]
    elif directions and rest and DIRECTION_SYNONYMS.get(rest[0], rest[0]) in directions:
        rest = rest[1:]  # "push in", "pull back"
    amount = None
    if rest and re.fullmatch(r"\d+(?:\.\d+)?", rest[0]):
        if unit_kind is None:
            raise _error(phrase, f"'{words[0]}' takes no number")
        amount, rest = float(rest[0]), rest[1:]
        if rest and rest[0] in UNITS:
            unit = UNITS[rest[0]]
            if unit == "centimetres" and unit_kind == "metres":
                amount /= 100.0
            elif unit != unit_kind:
                raise _error(phrase, f"'{words[0]}' is measured in {unit_kind}, not {unit}")
            rest = rest[1:]
    if rest:
        raise _error(phrase, f"unknown word '{rest[0]}' after '{words[0]}'")
    return PhraseMove(move, direction, amount)


def parse_camera_phrase(phrase: str) -> list[PhraseMove]:
    """The moves of a phrase, all happening together over the shot."""
    if not isinstance(phrase, str) or not phrase.strip():
        raise _error(str(phrase), "the phrase is empty")
    clauses, current = [], []
    for token in _tokens(phrase):
        if token in SEPARATORS:
            if current:
                clauses.append(current)
            current = []
        else:
            current.append(token)
    if current:
        clauses.append(current)
    if not clauses:
        raise _error(phrase, "no camera move found")
    return [_parse_clause(phrase, clause) for clause in clauses]


def camera_path_from_phrase(phrase: str, num_frames: int, fps: float, width: int, height: int,
                            distance: float = 3.5, azimuth_deg: float = 0.0, elevation_deg: float = 5.0,
                            target=(0.0, 0.0, 0.95), vertical_fov_deg: float = 40.0, seed: int = 0,
                            frames=None) -> CameraPath:
    """A camera path of num_frames (numbered 0..F-1 unless `frames` is given) following the phrase.

    The camera starts `distance` metres from `target` at the given azimuth (0 = in front of the
    character, 90 = its left) and elevation, looking at the target; every move eases in and out over
    the whole shot. Raises ValueError naming the phrase and the grammar when a word is not understood.
    """
    moves = parse_camera_phrase(phrase)
    if num_frames < 1:
        raise ValueError(f"camera phrase '{phrase}': needs at least 1 frame, got {num_frames}")
    if distance <= 0:
        raise ValueError(f"camera phrase '{phrase}': distance must be positive, got {distance}")
    rng = np.random.default_rng(seed)
    trajectory = CameraTrajectory.still(num_frames, azimuth_deg, elevation_deg, distance, target, vertical_fov_deg)
    progress = ease(num_frames)
    start_right = CameraTrajectory.still(1, azimuth_deg, elevation_deg, distance, target).to_camera_path(
        width, height, fps).world_to_camera[0, 0, :3]
    start_right = start_right - start_right[2] * np.array([0.0, 0.0, 1.0])  # trucking stays level
    start_right /= np.linalg.norm(start_right)

    for move in moves:
        default = VERBS[move.move][3]
        amount = default if move.amount is None else move.amount
        sign = 1.0 if move.direction in ("right", "up", "in", "") else -1.0
        if move.move == "orbit":
            # Orbit left: the camera travels to its own left, i.e. azimuth decreases.
            trajectory = apply_move(trajectory, "orbit", sign * amount, progress)
        elif move.move == "dolly":
            amount = 0.4 * distance if amount is None else amount
            if move.direction == "in" and amount >= distance:
                raise ValueError(f"camera phrase '{phrase}': dolly in {amount:g} m would reach the subject "
                                 f"{distance:g} m away; use less than {distance:g} m or a larger distance")
            trajectory = apply_move(trajectory, f"dolly_{move.direction}", amount / distance, progress)
        elif move.move == "truck":
            trajectory.shared_offset = trajectory.shared_offset + np.outer(sign * amount * progress, start_right)
        elif move.move == "pedestal":
            trajectory.shared_offset = trajectory.shared_offset + np.outer(sign * amount * progress, [0.0, 0.0, 1.0])
        elif move.move == "crane":
            trajectory = apply_move(trajectory, f"crane_{move.direction}", amount, progress)
        elif move.move == "tilt":
            trajectory.tilt_deg = trajectory.tilt_deg + sign * amount * progress
        elif move.move == "pan":
            # Pan right turns the view to the right: negative pan in the trajectory's "pan left" sense.
            trajectory.pan_deg = trajectory.pan_deg - sign * amount * progress
        elif move.move == "zoom":
            if amount <= 0:
                raise ValueError(f"camera phrase '{phrase}': zoom factor must be positive, got {amount:g}")
            factor = amount if move.direction == "in" else 1.0 / amount
            zoom = 1.0 + (factor - 1.0) * progress  # focal length multiplier
            half_height = np.tan(np.radians(trajectory.vertical_fov_deg) / 2.0) / zoom
            trajectory.vertical_fov_deg = np.degrees(2.0 * np.arctan(half_height))
        elif move.move == "handheld":
            trajectory = apply_move(trajectory, "handheld", amount, progress, rng, fps)
    return trajectory.to_camera_path(width, height, fps, frames)


__all__ = ["GRAMMAR", "PhraseMove", "camera_path_from_phrase", "parse_camera_phrase"]
