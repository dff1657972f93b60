"""Random looks of a training character from one seed: body shape, skin tone, hair and clothing
regions with patterns, all as numpy arrays (vertex colours, extra hair geometry), no bpy.

Colours are per vertex so Workbench and Cycles show the same appearance; clothing regions come
from the LBS weights of the SMPL-H joints, so they follow any body shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# SMPL-H joint indices of the clothing regions (see SMPLH_JOINT_NAMES).
_SHIRT_JOINTS = (3, 6, 9, 13, 14, 16, 17)
_SLEEVE_JOINTS = (18, 19)
_TROUSER_JOINTS = (0, 1, 2)
_LEG_JOINTS = (4, 5)
_SHIN_JOINTS = (7, 8)
_FOOT_JOINTS = (10, 11)
HEAD_JOINT = 15

# Linear-RGB anchors from dark to light skin; a tone is drawn between neighbours.
_SKIN_TONES = np.array(
    [[0.09, 0.04, 0.02], [0.23, 0.11, 0.06], [0.45, 0.24, 0.14], [0.62, 0.38, 0.25], [0.80, 0.55, 0.42]]
)
PATTERNS = ("plain", "stripes", "checks", "noise")
HAIR_STYLES = ("none", "cap", "bun")
BACKGROUNDS = ("plain", "gradient", "textured")


@dataclass
class Appearance:
    """Everything random about one clip's look, drawn from `appearance_seed`."""

    seed: int
    skin: np.ndarray  # (3,) linear RGB
    hair_style: str
    hair: np.ndarray
    shirt: tuple  # (pattern, colour_a (3,), colour_b (3,), frequency)
    trousers: tuple
    shoes: np.ndarray
    long_sleeves: bool
    long_trousers: bool
    background: str
    background_colours: np.ndarray  # (3, 3): ground, backdrop low, backdrop high
    background_frequency: float
    sun_elevation_deg: float
    sun_azimuth_deg: float
    sun_kelvin: float
    sun_strength: float
    fill_strength: float


def random_betas(seed: int, num_betas: int = 10, scale: float = 1.0) -> np.ndarray:
    """Body shape for an appearance seed: the first shape components vary most, (num_betas,) float32."""
    rng = np.random.default_rng([int(seed), 1])
    falloff = 1.0 / np.sqrt(1.0 + np.arange(num_betas))
    return (rng.normal(size=num_betas) * falloff * scale).clip(-2.5, 2.5).astype(np.float32)


def _colour(rng: np.random.Generator, saturation=(0.2, 0.9), value=(0.05, 0.9)) -> np.ndarray:
    hue = rng.random()
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    rgb = np.clip(np.abs(np.mod(hue * 6.0 + np.array([0.0, 4.0, 2.0]), 6.0) - 3.0) - 1.0, 0.0, 1.0)
    return (v * (1.0 - s + s * rgb)) ** 2.2  # display-ish choice -> linear


def _garment(rng):
    return (str(rng.choice(PATTERNS)), _colour(rng), _colour(rng), float(rng.uniform(6.0, 20.0)))


def random_appearance(seed: int) -> Appearance:
    rng = np.random.default_rng([int(seed), 2])
    low = rng.integers(0, len(_SKIN_TONES) - 1)
    skin = _SKIN_TONES[low] + rng.random() * (_SKIN_TONES[low + 1] - _SKIN_TONES[low])
    return Appearance(
        seed=int(seed),
        skin=skin,
        hair_style=str(rng.choice(HAIR_STYLES, p=[0.2, 0.5, 0.3])),
        hair=_colour(rng, saturation=(0.2, 0.8), value=(0.02, 0.6)),
        shirt=_garment(rng),
        trousers=_garment(rng),
        shoes=_colour(rng, value=(0.02, 0.7)),
        long_sleeves=bool(rng.random() < 0.5),
        long_trousers=bool(rng.random() < 0.7),
        background=str(rng.choice(BACKGROUNDS)),
        background_colours=np.stack([_colour(rng, value=(0.1, 0.95)) for _ in range(3)]),
        background_frequency=float(rng.uniform(0.5, 3.0)),
        sun_elevation_deg=float(rng.uniform(20.0, 75.0)),
        sun_azimuth_deg=float(rng.uniform(0.0, 360.0)),
        sun_kelvin=float(rng.uniform(3500.0, 8000.0)),
        sun_strength=float(rng.uniform(2.0, 5.0)),
        fill_strength=float(rng.uniform(0.3, 1.0)),
    )


def pattern_mix(pattern: str, frequency: float, points: np.ndarray, seed: int) -> np.ndarray:
    """Blend factor in [0, 1] of colour b over colour a at rest-pose points (N, 3)."""
    if pattern == "stripes":
        return (np.sin(frequency * 2.0 * np.pi * points[:, 1] / 2.0) > 0).astype(np.float64)
    if pattern == "checks":
        cells = np.floor(points * frequency / 2.0).astype(np.int64)
        return ((cells[:, 0] + cells[:, 1] + cells[:, 2]) % 2).astype(np.float64)
    if pattern == "noise":
        rng = np.random.default_rng([int(seed), 3])
        waves = rng.normal(size=(6, 3)) * frequency
        phases = rng.uniform(0, 2 * np.pi, size=6)
        value = np.sin(points @ waves.T + phases).sum(axis=1)
        return 1.0 / (1.0 + np.exp(-1.5 * value))
    return np.zeros(len(points))


def vertex_colours(appearance: Appearance, rest_vertices: np.ndarray, weights: np.ndarray, rest_joints: np.ndarray) -> np.ndarray:
    """Linear RGB per body vertex (V, 3): skin, shirt, trousers and shoes regions with patterns."""
    weights = np.asarray(weights)
    shirt_joints = _SHIRT_JOINTS + (_SLEEVE_JOINTS if appearance.long_sleeves else ())
    trouser_joints = _TROUSER_JOINTS + _LEG_JOINTS + (_SHIN_JOINTS if appearance.long_trousers else ())
    scores = np.stack(
        [
            weights.sum(axis=1) - weights[:, list(shirt_joints + trouser_joints)].sum(axis=1),
            weights[:, list(shirt_joints)].sum(axis=1),
            weights[:, list(trouser_joints)].sum(axis=1),
        ],
        axis=1,
    )
    region = scores.argmax(axis=1)  # 0 skin, 1 shirt, 2 trousers
    colours = np.tile(appearance.skin, (len(rest_vertices), 1))
    for region_index, (pattern, colour_a, colour_b, frequency) in ((1, appearance.shirt), (2, appearance.trousers)):
        mask = region == region_index
        mix = pattern_mix(pattern, frequency, rest_vertices[mask], appearance.seed + region_index)[:, None]
        colours[mask] = (1.0 - mix) * colour_a + mix * colour_b
    # Shoes by height: everything below a little above the ankles (rest pose is Y up).
    ankle_height = rest_joints[list(_SHIN_JOINTS), 1].mean()
    foot_weight = weights[:, list(_SHIN_JOINTS + _FOOT_JOINTS)].sum(axis=1)
    shoe = (rest_vertices[:, 1] < ankle_height + 0.03) & (foot_weight > 0.5)
    colours[shoe] = appearance.shoes
    return _front_cues(appearance, colours, rest_vertices, weights, rest_joints, region, shoe)


def _contrast(colour: np.ndarray) -> np.ndarray:
    """A linear-RGB colour far from `colour` in brightness: near white on dark cloth, near black on light."""
    luminance = float(np.dot(colour, [0.2126, 0.7152, 0.0722]))
    return np.array([0.85, 0.8, 0.7]) if luminance < 0.25 else np.array([0.02, 0.02, 0.03])


def _front_cues(appearance, colours, rest_vertices, weights, rest_joints, region, shoe) -> np.ndarray:
    """Marks only the front shows, so a body seen from behind never looks like one seen from the front
    (with symmetric clothes the two are mirror images and an encoder cannot tell which way it faces):
    a chest print, a face (eyes and mouth) and light toe caps. Rest pose: Y up, the body faces +Z."""
    x, y, z = rest_vertices[:, 0], rest_vertices[:, 1], rest_vertices[:, 2]
    chest = rest_joints[9]  # spine3
    print_mask = (region == 1) & (z > chest[2] + 0.02) & (np.abs(x - chest[0]) < 0.09) \
        & (y > chest[1] - 0.12) & (y < chest[1] + 0.08)
    colours[print_mask] = _contrast(appearance.shirt[1])
    head = weights[:, HEAD_JOINT] > 0.5
    head_points = rest_vertices[head]
    centre = 0.5 * (head_points.min(axis=0) + head_points.max(axis=0))
    radius = 0.5 * (head_points.max(axis=0) - head_points.min(axis=0))
    front = head & (z > centre[2] + 0.4 * radius[2])
    eyes = front & (np.abs(np.abs(x - centre[0]) - 0.33 * radius[0]) < 0.2 * radius[0]) \
        & (np.abs(y - (centre[1] + 0.1 * radius[1])) < 0.14 * radius[1])
    mouth = front & (np.abs(x - centre[0]) < 0.3 * radius[0]) & (np.abs(y - (centre[1] - 0.45 * radius[1])) < 0.1 * radius[1])
    colours[eyes] = np.array([0.01, 0.01, 0.012])
    colours[mouth] = np.array([0.25, 0.02, 0.03])
    ankles = rest_joints[list(_SHIN_JOINTS), 2].mean()
    colours[shoe & (z > ankles + 0.06)] = _contrast(appearance.shoes)
    return colours


def hair_geometry(appearance: Appearance, rest_vertices: np.ndarray, weights: np.ndarray):
    """Hair cap (and bun) around the head in rest-pose SMPL axes (Y up, face +Z):
    returns (vertices (N,3), quad faces (M,4)), empty for style "none"."""
    if appearance.hair_style == "none":
        return np.zeros((0, 3)), np.zeros((0, 4), dtype=np.int64)
    head = rest_vertices[weights[:, HEAD_JOINT] > 0.5]
    centre = 0.5 * (head.min(axis=0) + head.max(axis=0))
    radius = 0.5 * (head.max(axis=0) - head.min(axis=0))
    # The cap sits slightly behind and above the head centre so the face stays visible.
    cap_centre = centre + np.array([0.0, 0.15 * radius[1], -0.12 * radius[2]])
    parts = [_sphere_part(cap_centre, radius * np.array([1.1, 0.95, 1.1]), max_polar=0.55 * np.pi)]
    if appearance.hair_style == "bun":
        bun_centre = centre + np.array([0.0, 0.55 * radius[1], -0.95 * radius[2]])
        parts.append(_sphere_part(bun_centre, radius * 0.45, max_polar=np.pi))
    vertices, faces, offset = [], [], 0
    for part_vertices, part_faces in parts:
        vertices.append(part_vertices)
        faces.append(part_faces + offset)
        offset += len(part_vertices)
    return np.concatenate(vertices), np.concatenate(faces)


def _sphere_part(centre, radii, max_polar, rings=10, segments=20):
    """A UV-sphere piece from the top (+Y pole) down to polar angle max_polar, as quads."""
    polar = np.linspace(0.0, max_polar, rings + 1)
    azimuth = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    p, a = np.meshgrid(polar, azimuth, indexing="ij")
    unit = np.stack([np.sin(p) * np.sin(a), np.cos(p), np.sin(p) * np.cos(a)], axis=-1).reshape(-1, 3)
    vertices = centre + unit * radii
    ring = np.arange(rings)[:, None]
    seg = np.arange(segments)[None, :]
    nxt = (seg + 1) % segments
    faces = np.stack(
        [ring * segments + seg, ring * segments + nxt, (ring + 1) * segments + nxt, (ring + 1) * segments + seg], axis=-1
    ).reshape(-1, 4)
    return vertices, faces


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """Approximate linear RGB of a black body (normalised so the brightest channel is 1)."""
    t = kelvin / 100.0
    red = 255.0 if t <= 66 else 329.698727446 * (t - 60) ** -0.1332047592
    green = 99.4708025861 * np.log(t) - 161.1195681661 if t <= 66 else 288.1221695283 * (t - 60) ** -0.0755148492
    blue = 255.0 if t >= 66 else (0.0 if t <= 19 else 138.5177312231 * np.log(t - 10) - 305.0447927307)
    rgb = (np.clip([red, green, blue], 0.0, 255.0) / 255.0) ** 2.2
    return rgb / rgb.max()
