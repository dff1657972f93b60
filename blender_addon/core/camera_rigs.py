"""Camera rigs in the character frame: a static ring of views, moving cameras (orbit, dolly, crane,
handheld and their combinations) and a driving view, each framed so a person stays in the image.

numpy only. Conventions (character frame: metres, Z up, character facing -Y): azimuth 0 is in front
of the character, 90 degrees on its left (+X), increasing counter-clockwise seen from above, so a
positive orbit arc moves the camera to its own right. Everything random comes from a seed or a
numpy Generator, so a rig is reproducible.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from .camera_path import CameraPath

WORLD_UP = np.array([0.0, 0.0, 1.0])
# A standing person with arms a little out, ground at z = 0 (min corner, max corner).
DEFAULT_SUBJECT_BOX = (np.array([-0.5, -0.4, 0.0]), np.array([0.5, 0.4, 1.8]))
MOVES = ("orbit", "dolly_in", "dolly_out", "crane_up", "crane_down", "handheld")


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """OpenCV world_to_camera (4, 4) of a camera at `eye` looking at `target`, image up along `up`."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm < 1e-9:
        raise ValueError(f"look_at: eye {eye.tolist()} and target {target.tolist()} coincide; "
                         f"place the camera away from its target")
    forward /= norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-6:  # looking straight along `up`: any horizontal right will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]) if abs(forward[1]) < 0.9 else np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    world_to_camera = np.eye(4)
    world_to_camera[:3, :3] = np.stack([right, down, forward])
    world_to_camera[:3, 3] = -world_to_camera[:3, :3] @ eye
    return world_to_camera


def intrinsics_from_fov(fov_deg: float, width: int, height: int, axis: str = "vertical") -> np.ndarray:
    """Centred K (3, 3) with square pixels whose field of view along `axis` is fov_deg."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view {fov_deg} degrees is outside (0, 180); pick an angle in between")
    extent = {"vertical": height, "horizontal": width}[axis]
    focal = extent / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def intrinsics_from_focal(focal_mm: float, width: int, height: int, sensor_width_mm: float = 36.0) -> np.ndarray:
    """Centred K (3, 3) of a lens of focal_mm on a sensor sensor_width_mm wide (Blender's default fit)."""
    if focal_mm <= 0 or sensor_width_mm <= 0:
        raise ValueError(f"focal length {focal_mm} mm and sensor width {sensor_width_mm} mm must be positive")
    focal = focal_mm / sensor_width_mm * width
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def ease(num_frames: int) -> np.ndarray:
    """(F,) smooth 0 -> 1 progress (ease in and out), 0 for a single frame."""
    if num_frames <= 1:
        return np.zeros(num_frames)
    t = np.linspace(0.0, 1.0, num_frames)
    return t * t * (3.0 - 2.0 * t)


def _rotation_about(axis: int, angle_rad: float) -> np.ndarray:
    """Right-handed rotation (3, 3) by angle_rad about the x (0), y (1) or z (2) axis."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return [np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])][axis]


@dataclasses.dataclass
class CameraTrajectory:
    """A camera described per frame by how it sits around a target, before becoming matrices.

    The eye is at target + distance * direction(azimuth, elevation) + eye_offset; the camera looks at
    the target + target_offset, then turns by pan (to the left), tilt (up) and roll (counter-clockwise)
    about its own axes. Arrays are (F,) except the (F, 3) positions.
    """

    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    distance: np.ndarray
    target: np.ndarray  # (F, 3)
    vertical_fov_deg: np.ndarray
    eye_offset: np.ndarray  # (F, 3) moves the eye only (crane)
    shared_offset: np.ndarray  # (F, 3) moves eye and target together (truck, pedestal, handheld)
    pan_deg: np.ndarray
    tilt_deg: np.ndarray
    roll_deg: np.ndarray

    @classmethod
    def still(cls, num_frames: int, azimuth_deg=0.0, elevation_deg=0.0, distance=3.5,
              target=(0.0, 0.0, 0.95), vertical_fov_deg=40.0) -> "CameraTrajectory":
        full = lambda value: np.full(num_frames, float(value))  # noqa: E731
        return cls(azimuth_deg=full(azimuth_deg), elevation_deg=full(elevation_deg), distance=full(distance),
                   target=np.tile(np.asarray(target, dtype=np.float64), (num_frames, 1)),
                   vertical_fov_deg=full(vertical_fov_deg), eye_offset=np.zeros((num_frames, 3)),
                   shared_offset=np.zeros((num_frames, 3)), pan_deg=full(0.0), tilt_deg=full(0.0),
                   roll_deg=full(0.0))

    @property
    def num_frames(self) -> int:
        return int(self.azimuth_deg.shape[0])

    def eyes(self) -> np.ndarray:
        """(F, 3) camera positions."""
        azimuth, elevation = np.radians(self.azimuth_deg), np.radians(self.elevation_deg)
        direction = np.stack([np.cos(elevation) * np.sin(azimuth), -np.cos(elevation) * np.cos(azimuth),
                              np.sin(elevation)], axis=-1)  # (F, 3) from target to eye
        return self.target + self.distance[:, None] * direction + self.eye_offset + self.shared_offset

    def to_camera_path(self, width: int, height: int, fps: float, frames=None) -> CameraPath:
        eyes = self.eyes()
        targets = self.target + self.shared_offset
        world_to_camera = np.stack([look_at(eye, target) for eye, target in zip(eyes, targets)])  # (F, 4, 4)
        for index in range(self.num_frames):
            # Pan left turns the view towards -x (about camera y), tilt up towards -y (about x).
            turn = (_rotation_about(2, -math.radians(self.roll_deg[index]))
                    @ _rotation_about(0, -math.radians(self.tilt_deg[index]))
                    @ _rotation_about(1, math.radians(self.pan_deg[index])))
            world_to_camera[index, :3] = turn @ world_to_camera[index, :3]
        K = np.stack([intrinsics_from_fov(fov, width, height) for fov in self.vertical_fov_deg])
        frames = np.arange(self.num_frames) if frames is None else np.asarray(frames)
        return CameraPath(width=int(width), height=int(height), fps=float(fps), frames=frames, K=K,
                          world_to_camera=world_to_camera)


def box_corners(subject_box) -> np.ndarray:
    """(8, 3) corners of an axis-aligned box given as (min corner, max corner)."""
    low, high = (np.asarray(v, dtype=np.float64) for v in subject_box)
    return np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])])


def framing_extent(camera_path: CameraPath, points: np.ndarray) -> float:
    """How much of the image the points fill at worst: max over frames of |pixel - centre| / half size
    (1.0 touches the border; inf if a point is behind the camera)."""
    uv, depth = camera_path.project(points)
    if np.any(depth <= 1e-6):
        return math.inf
    half = np.array([camera_path.width / 2.0, camera_path.height / 2.0])
    return float(np.abs((uv - half) / half).max())


def fit_distance(trajectory: CameraTrajectory, subject_box, fill: float, width: int, height: int) -> CameraTrajectory:
    """Scale the trajectory's distances (keeping their profile) so the subject box fills `fill` of the
    image at the tightest frame; everything else in the image stays as it was."""
    corners = box_corners(subject_box)
    profile = trajectory.distance / trajectory.distance.max()

    def extent(scale: float) -> float:
        trial = dataclasses.replace(trajectory, distance=profile * scale)
        return framing_extent(trial.to_camera_path(width, height, 1.0), corners)

    near, far = 0.05, 1.0
    while extent(far) > fill:
        far *= 2.0
        if far > 1e4:
            raise ValueError("the subject cannot be framed by this camera move; reduce pan, tilt or shake")
    for _ in range(40):  # bisection: extent falls as the camera backs off
        middle = 0.5 * (near + far)
        near, far = (middle, far) if extent(middle) > fill else (near, middle)
    return dataclasses.replace(trajectory, distance=profile * far)


def _generator(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _subject_target(subject_box, rng: np.random.Generator) -> np.ndarray:
    """A look-at point around the body centre, about 0.9-1.0 m up for a standing person."""
    low, high = (np.asarray(v, dtype=np.float64) for v in subject_box)
    centre = 0.5 * (low + high)
    jitter = rng.uniform(-1.0, 1.0, 3) * np.array([0.1, 0.1, 0.05]) * (high - low)
    return centre + jitter


@dataclasses.dataclass
class RigView:
    """One rendered view of a clip: its name, kind (static, moving or driving), camera and manifest fields."""

    name: str
    kind: str
    camera_path: CameraPath
    details: dict = dataclasses.field(default_factory=dict)

    def manifest_entry(self) -> dict:
        return {"name": self.name, "kind": self.kind, **self.details}


def static_view(azimuth_deg: float, elevation_deg: float, num_frames: int, fps: float, width: int, height: int,
                seed=0, subject_box=DEFAULT_SUBJECT_BOX, fill_range=(0.55, 0.85),
                vertical_fov_range_deg=(20.0, 55.0)) -> CameraPath:
    """A still camera at the given azimuth and elevation, random focal length and a distance that
    makes the subject fill a random fraction of the image."""
    rng = _generator(seed)
    trajectory = CameraTrajectory.still(num_frames, azimuth_deg, elevation_deg, 1.0, _subject_target(subject_box, rng),
                                        rng.uniform(*vertical_fov_range_deg))
    trajectory = fit_distance(trajectory, subject_box, rng.uniform(*fill_range), width, height)
    return trajectory.to_camera_path(width, height, fps)


def static_ring(num_azimuths: int, elevations_deg, num_frames: int, fps: float, width: int, height: int, seed=0,
                subject_box=DEFAULT_SUBJECT_BOX, azimuth_jitter_deg: float = 0.0, **framing) -> list[RigView]:
    """num_azimuths evenly spaced azimuths (from the front) x the given elevations of still cameras,
    each with its own random focal length and distance."""
    if num_azimuths < 1:
        raise ValueError(f"a static ring needs at least one azimuth, got {num_azimuths}")
    rng = _generator(seed)
    views = []
    for elevation in elevations_deg:
        for index in range(num_azimuths):
            azimuth = 360.0 * index / num_azimuths + rng.uniform(-1.0, 1.0) * azimuth_jitter_deg
            camera_path = static_view(azimuth, elevation, num_frames, fps, width, height, rng, subject_box, **framing)
            name = f"static_az{round(azimuth) % 360:03d}_el{round(elevation):+03d}".replace("+", "")
            views.append(RigView(name, "static", camera_path,
                                 {"azimuth_deg": float(azimuth % 360.0), "elevation_deg": float(elevation)}))
    return views


def handheld_shake(num_frames: int, fps: float, rng: np.random.Generator, amplitude_m: float = 0.02,
                   amplitude_deg: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random shake: position offsets (F, 3) in metres and (pan, tilt, roll) angles (F, 3) in
    degrees, as a few incommensurate sines (0.3-2 Hz) like a person holding a camera."""
    time = np.arange(num_frames) / fps
    def wobble(amplitude):  # (F, 3)
        frequencies = rng.uniform(0.3, 2.0, size=(3, 3))
        phases = rng.uniform(0.0, 2.0 * math.pi, size=(3, 3))
        weights = rng.uniform(0.3, 1.0, size=(3, 3))
        waves = weights[None] * np.sin(2.0 * math.pi * frequencies[None] * time[:, None, None] + phases[None])
        return amplitude * waves.sum(-1) / weights.sum(-1)[None]
    return wobble(amplitude_m), wobble(amplitude_deg)


def apply_move(trajectory: CameraTrajectory, move: str, amount: float, progress: np.ndarray,
               rng: np.random.Generator | None = None, fps: float = 24.0) -> CameraTrajectory:
    """Apply one camera move to a trajectory over `progress` (F,) going 0 -> 1.

    orbit: amount degrees of azimuth (positive: camera moves to its right); dolly_in/out: distance
    multiplied by 1 -/+ amount (a fraction); crane_up/down: eye rises/sinks amount metres, still
    looking at the target; handheld: shake scaled by amount (1 = typical).
    """
    t = dataclasses.replace(trajectory)  # arrays are replaced below, never written in place
    if move == "orbit":
        t.azimuth_deg = trajectory.azimuth_deg + amount * progress
    elif move in ("dolly_in", "dolly_out"):
        if move == "dolly_in" and not 0.0 <= amount < 1.0:
            raise ValueError(f"dolly in by {amount:g} of the distance is impossible; use a fraction below 1")
        sign = -1.0 if move == "dolly_in" else 1.0
        t.distance = trajectory.distance * (1.0 + sign * amount * progress)
    elif move in ("crane_up", "crane_down"):
        sign = 1.0 if move == "crane_up" else -1.0
        t.eye_offset = trajectory.eye_offset + np.outer(sign * amount * progress, WORLD_UP)
    elif move == "handheld":
        shake_position, shake_angles = handheld_shake(trajectory.num_frames, fps, _generator(rng))
        t.shared_offset = trajectory.shared_offset + amount * shake_position
        t.pan_deg = trajectory.pan_deg + amount * shake_angles[:, 0]
        t.tilt_deg = trajectory.tilt_deg + amount * shake_angles[:, 1]
        t.roll_deg = trajectory.roll_deg + amount * 0.5 * shake_angles[:, 2]
    else:
        raise ValueError(f"unknown camera move '{move}'; use one of {', '.join(MOVES)}")
    return t


def moving_camera(kind: str, num_frames: int, fps: float, width: int, height: int, seed=0,
                  subject_box=DEFAULT_SUBJECT_BOX, azimuth_deg: float | None = None, fill_range=(0.5, 0.8),
                  vertical_fov_range_deg=(25.0, 55.0)) -> CameraPath:
    """A moving camera: `kind` is one move of MOVES or several joined by '+' ("orbit+dolly_in").

    Random start azimuth (unless given), elevation, focal length and move sizes (orbit 30-120
    degrees either way, dolly 20-45 %, crane 0.4-1.2 m); the distance is then fitted so the subject
    stays in frame on every frame.
    """
    moves = [move.strip() for move in kind.split("+") if move.strip()]
    unknown = [move for move in moves if move not in MOVES]
    if not moves or unknown:
        raise ValueError(f"unknown camera move '{kind}'; use one of {', '.join(MOVES)} or several joined by '+'")
    rng = _generator(seed)
    start_azimuth = rng.uniform(0.0, 360.0) if azimuth_deg is None else azimuth_deg
    trajectory = CameraTrajectory.still(num_frames, start_azimuth, rng.uniform(-5.0, 25.0), 1.0,
                                        _subject_target(subject_box, rng), rng.uniform(*vertical_fov_range_deg))
    progress = ease(num_frames)
    for move in moves:
        amount = {
            "orbit": rng.choice([-1.0, 1.0]) * rng.uniform(30.0, 120.0),
            "dolly_in": rng.uniform(0.2, 0.45),
            "dolly_out": rng.uniform(0.25, 0.8),
            "crane_up": rng.uniform(0.4, 1.2),
            "crane_down": rng.uniform(0.4, 1.2),
            "handheld": rng.uniform(0.6, 1.5),
        }[move]
        trajectory = apply_move(trajectory, move, amount, progress, rng, fps)
    trajectory = fit_distance(trajectory, subject_box, rng.uniform(*fill_range), width, height)
    return trajectory.to_camera_path(width, height, fps)


def driving_view(num_frames: int, fps: float, width: int, height: int, seed=0,
                 subject_box=DEFAULT_SUBJECT_BOX, handheld: bool | None = None) -> CameraPath:
    """A camera like a phone filming a person: roughly frontal (azimuth within +-35 degrees),
    near eye level, the person filling most of the frame, sometimes hand-held."""
    rng = _generator(seed)
    trajectory = CameraTrajectory.still(num_frames, rng.uniform(-35.0, 35.0), rng.uniform(-3.0, 12.0), 1.0,
                                        _subject_target(subject_box, rng), rng.uniform(35.0, 60.0))
    if handheld if handheld is not None else rng.random() < 0.5:
        trajectory = apply_move(trajectory, "handheld", rng.uniform(0.3, 1.0), ease(num_frames), rng, fps)
    trajectory = fit_distance(trajectory, subject_box, rng.uniform(0.7, 0.9), width, height)
    return trajectory.to_camera_path(width, height, fps)


def clip_rig(num_frames: int, fps: float, width: int, height: int, seed=0, num_azimuths: int = 4,
             elevations_deg=(10.0,), moves=("orbit", "dolly_in+handheld"), subject_box=DEFAULT_SUBJECT_BOX
             ) -> list[RigView]:
    """All views of one training clip: the driving view, a static ring and the given moving cameras."""
    rng = _generator(seed)
    views = [RigView("driving", "driving", driving_view(num_frames, fps, width, height, rng, subject_box))]
    views += static_ring(num_azimuths, elevations_deg, num_frames, fps, width, height, rng, subject_box)
    for move in moves:
        camera_path = moving_camera(move, num_frames, fps, width, height, rng, subject_box)
        views.append(RigView(f"moving_{move.replace('+', '_')}", "moving", camera_path, {"move": move}))
    return views
