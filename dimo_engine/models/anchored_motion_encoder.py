"""Anchored motion encoders: a driving crop becomes motion tokens that each carry a learned feature and a 3D anchor.

The default model's encoders (3DiMo's E_b and E_h, made to learn on a CPU). Per frame the body encoder reads one
person-centred crop and gives K = 22 tokens, one per SMPL-H body joint: a learned feature (trained end to end by
the generation loss) and an anchor, a 3D point in the *view frame* of the driving camera (gravity-aligned, turned
with the camera's heading; root-relative), plus the root's place in that frame. No driving camera is needed at
inference: `character_frame_anchors` turns the view-frame anchors of a clip into the character frame by the body's
own facing at frame 0 (the character frame's definition), which is where the generator's target camera reads them.
The hand encoder reads the two hand crops and gives one token per hand, anchored at that wrist.

Auxiliary heads (training only, annealed to zero): SMPL-H joint rotations (6D) and 2D joints in the crop (the latter
also place the hand crops at inference).

Two ways to read the body's geometry (`geometry`): "global", every number regressed from one flattened feature
vector (the first default model's); and "integral", where a small top-down decoder gives each joint a heatmap and a
depth map at 16 x 16, the 2D joints are the heatmaps' expected positions (soft-argmax, as in integral pose
regression) and the anchors are lifted from them: sideways and up from the 2D offsets times a metres-per-crop scale,
forward from the depth maps, turned by the camera's pitch; a zero-started residual adds what that misses. A joint's
place in the image is then read where it is, not memorised from the whole crop, so it carries over to poses the
training clips never held.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from kornia.geometry.subpix import spatial_expectation2d
from torch import nn

from dimo_engine.errors import InputError
from dimo_engine.models.motion_encoder import IDENTITY_6D

NUM_BODY_TOKENS = 22  # pelvis + 21 body joints, SMPL-H order
NUM_JOINTS_2D = 52
LEFT_HIP, RIGHT_HIP, LEFT_SHOULDER, RIGHT_SHOULDER = 1, 2, 16, 17
WRISTS = (20, 21)
UP = (0.0, 0.0, 1.0)
# Joints that move with the body as a whole (no arms): swinging arms would pull the fit's scale and centre.
TRUNK = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15)
TYPICAL_ROOT = (0.0, 5.9, 0.96)  # mean of the training renders' driving roots (view frame)
GEOMETRIES = ("global", "integral")
HEATMAP_SIZE = 16  # the integral decoder's resolution (a 64 px crop: 4 px a cell; soft-argmax is finer than a cell)
TYPICAL_METRES_PER_CROP = 2.0  # a standing body fills ~0.85 of its square crop: ~1.7 m over the crop's side


def _conv_block(channels_in: int, channels_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(channels_in, channels_out, 3, stride=2, padding=1),
        nn.GroupNorm(8, channels_out), nn.SiLU(),
        nn.Conv2d(channels_out, channels_out, 3, padding=1),
        nn.GroupNorm(8, channels_out), nn.SiLU(),
    )


class AnchoredMotionEncoder(ModelMixin, ConfigMixin):
    """Per-frame CNN tokenizer with anchored tokens (body: one crop a frame; hands: two crops a frame).

    Args:
        image_size: crops are resized to this square size.
        num_crops: 1 for the body, 2 for the hands (each hand its own token).
        num_tokens: tokens per crop (22 body joints; 1 per hand).
        feature_dim: width of each token's learned feature.
        channels: widths of the stride-2 convolution stages.
        box_features: extra numbers about the crop's place in the frame (centre x, y and side, in image units),
            read by the body heads so the root's place can be estimated.
        aux_joints: rotations the pose head predicts per crop (body 22: root tilt + 21 joints; hands 15 fingers).
        anchors: whether tokens carry anchors (body); hand tokens take their wrist's anchor instead.
        geometry: "global" (the anchors and 2D joints regressed from the flattened features) or "integral" (2D
            joints from heatmaps, anchors lifted from them with per-joint depth maps; body only, 4 stages).

    `forward(images, box_features=None)`: images `(B, F, C, H, W)` or `(B, F, N, C, H, W)` in [0, 1] ->
    dict with "features" `(B, F, N*K, feature_dim)` and, for the body, "anchors" `(B, F, K, 3)` (view frame,
    root-relative, metres), "root" `(B, F, 3)` (view frame: right, forward of the camera's foot, height), and the
    training heads "pose_6d" `(B, F, N, aux_joints, 6)` and "joints_2d" `(B, F, 52, 2)` (crop units, 0..1).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 64,
        num_crops: int = 1,
        num_tokens: int = NUM_BODY_TOKENS,
        feature_dim: int = 16,
        channels: tuple = (32, 64, 128, 192),
        hidden_dim: int = 512,
        box_features: int = 3,
        aux_joints: int = 22,
        anchors: bool = True,
        geometry: str = "global",
    ):
        super().__init__()
        if geometry not in GEOMETRIES:
            raise InputError(f"geometry {geometry!r} is not one of {', '.join(GEOMETRIES)}.")
        if geometry == "integral" and (not anchors or len(channels) != 4 or image_size // 4 != HEATMAP_SIZE):
            raise InputError(f"geometry 'integral' reads a body crop of {HEATMAP_SIZE * 4} px through 4 stages; this "
                             f"encoder has anchors={anchors}, {len(channels)} stages, {image_size} px.")
        stages, width = [], in_channels
        for channels_out in channels:
            stages.append(_conv_block(width, channels_out))
            width = channels_out
        self.backbone = nn.Sequential(*stages)
        cells = (image_size // 2 ** len(channels)) ** 2
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(width * cells + box_features, hidden_dim), nn.SiLU(),
                                   nn.Linear(hidden_dim, hidden_dim), nn.SiLU())
        self.feature_head = nn.Linear(hidden_dim, num_tokens * feature_dim)
        self.pose_head = nn.Linear(hidden_dim, aux_joints * 6)
        nn.init.zeros_(self.pose_head.weight)  # residuals around the identity rotation, starting there
        nn.init.zeros_(self.pose_head.bias)
        if anchors:
            self.anchor_head = nn.Linear(hidden_dim, num_tokens * 3)
            self.root_head = nn.Linear(hidden_dim, 3)
            with torch.no_grad():  # start at a typical place: on the optical axis, 6 m away, pelvis 0.96 m up
                self.root_head.bias.copy_(torch.tensor(TYPICAL_ROOT))
            if geometry == "global":
                self.joints_2d_head = nn.Linear(hidden_dim, NUM_JOINTS_2D * 2)
            else:
                self.decoder = IntegralDecoder(channels, num_tokens)
                self.lift_head = nn.Linear(hidden_dim, 2)  # log metres per crop unit (about the typical), pitch
                nn.init.zeros_(self.lift_head.weight)
                nn.init.zeros_(self.lift_head.bias)
                nn.init.zeros_(self.anchor_head.weight)  # the residual starts at nothing: the lift alone
                nn.init.zeros_(self.anchor_head.bias)

    @staticmethod
    def geometry_of(state_dict: dict) -> str:
        """The `geometry` a body encoder's weights were trained with: an integral decoder's weights say "integral"."""
        return "integral" if any(key.startswith("decoder.") for key in state_dict) else "global"

    def forward(self, images: torch.Tensor, box_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        cfg = self.config
        if images.ndim == 5 and cfg.num_crops == 1:
            images = images.unsqueeze(2)
        if images.ndim != 6 or images.shape[2] != cfg.num_crops or images.shape[3] != cfg.in_channels:
            raise InputError(f"Motion encoder input has shape {tuple(images.shape)}; give (B, F, {cfg.num_crops}, "
                             f"{cfg.in_channels}, H, W) crops in [0, 1].")
        batch, frames = images.shape[:2]
        pixels = rearrange(images, "b f n c h w -> (b f n) c h w").to(self.dtype)
        if pixels.shape[-2:] != (cfg.image_size, cfg.image_size):
            pixels = F.interpolate(pixels, size=(cfg.image_size, cfg.image_size), mode="bilinear", antialias=True)
        extra = torch.zeros(pixels.shape[0], cfg.box_features, dtype=pixels.dtype, device=pixels.device)
        if box_features is not None and cfg.box_features:
            extra = rearrange(box_features.to(pixels), "b f n c -> (b f n) c") if box_features.ndim == 4 else \
                box_features.to(pixels).reshape(-1, 1, cfg.box_features).expand(-1, cfg.num_crops, -1).reshape(-1, cfg.box_features)
        maps, feature = [], pixels * 2.0 - 1.0
        for stage in self.backbone:
            feature = stage(feature)
            maps.append(feature)
        hidden = self.trunk(torch.cat([feature.flatten(1), extra], dim=1))  # (BFN, hidden)

        def per_frame(x, pattern="(b f n) (k c) -> b f (n k) c", **sizes):
            return rearrange(x, pattern, b=batch, f=frames, n=cfg.num_crops, **sizes)

        out = {"features": per_frame(self.feature_head(hidden), c=cfg.feature_dim),
               "pose_6d": per_frame(self.pose_head(hidden), "(b f n) (j c) -> b f n j c", c=6) + IDENTITY_6D.to(hidden)}
        if cfg.anchors:
            anchors = per_frame(self.anchor_head(hidden), c=3)
            if cfg.geometry == "global":
                out["joints_2d"] = per_frame(self.joints_2d_head(hidden), c=2) + 0.5
            else:
                joints_2d, depth = self.decoder(maps)  # (BF, 52, 2) crop units, (BF, 22) metres
                lift = lifted_anchors(joints_2d[:, :cfg.num_tokens], depth, self.lift_head(hidden))  # (BF, 22, 3)
                anchors = anchors + rearrange(lift, "(b f) k c -> b f k c", b=batch)
                out["joints_2d"] = rearrange(joints_2d, "(b f) k c -> b f k c", b=batch)
            out["anchors"] = anchors - anchors[:, :, :1]  # root-relative by construction: the pelvis is the origin
            out["root"] = rearrange(self.root_head(hidden), "(b f) c -> b f c", b=batch)
        return out


class IntegralDecoder(nn.Module):
    """Top-down decoder of the body encoder's stage maps to per-joint heatmaps and depth maps at `HEATMAP_SIZE`: the
    2D joints `(N, 52, 2)` (crop units) are each heatmap's expected cell centre, and each body joint's depth `(N, 22)`
    (metres, relative) its depth map averaged under its heatmap (integral regression)."""

    def __init__(self, channels: tuple, num_tokens: int, width: int = 64):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels[1:])  # 16, 8 and 4 cells
        self.refine = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU(),
                                    nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width), nn.SiLU())
        self.heatmaps = nn.Conv2d(width, NUM_JOINTS_2D, 1)
        self.depths = nn.Conv2d(width, num_tokens, 1)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        top = self.lateral[-1](maps[-1])
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(maps[1:-1])):
            top = lateral(feature) + F.interpolate(top, size=feature.shape[-2:], mode="nearest")
        top = self.refine(top)  # (N, width, 16, 16)
        logits = self.heatmaps(top)
        weights = logits.flatten(2).softmax(-1).view_as(logits)  # (N, 52, 16, 16)
        # cell-index coordinates; +0.5 puts them at cell centres, over the side gives crop units
        joints_2d = (spatial_expectation2d(weights, normalized_coordinates=False) + 0.5) / top.shape[-1]  # (N, 52, 2)
        depth = (weights[:, : self.depths.out_channels] * self.depths(top)).sum((-2, -1))  # (N, 22)
        return joints_2d, depth


def lifted_anchors(joints_2d: torch.Tensor, depth: torch.Tensor, lift: torch.Tensor) -> torch.Tensor:
    """Root-relative view-frame anchors `(N, K, 3)` lifted from 2D joints `(N, K, 2)` (crop units, y down) and depths
    `(N, K)` (metres along the optical axis) by `lift` `(N, 2)`: the log of the metres a crop unit spans (about
    `TYPICAL_METRES_PER_CROP`) and the camera's pitch (radians, looking down). Camera axes (right, down, forward)
    turned by the pitch into the gravity-aligned view frame (right, forward, up)."""
    metres = TYPICAL_METRES_PER_CROP * lift[:, :1, None].exp()  # (N, 1, 1)
    right, down = (metres * (joints_2d - joints_2d[:, :1])).unbind(-1)
    ahead = depth - depth[:, :1]
    cos, sin = torch.cos(lift[:, 1:]), torch.sin(lift[:, 1:])
    return torch.stack([right, cos * ahead - sin * down, -cos * down - sin * ahead], dim=-1)


# ---- view frame <-> character frame ---------------------------------------------------------------------------


def view_frame_rotation(camera_to_world: torch.Tensor) -> torch.Tensor:
    """Rows (right, forward, up) of a camera's gravity-aligned view frame: `(..., 4, 4)` -> `(..., 3, 3)` taking
    character-frame vectors to view-frame ones. Forward is the optical axis flattened onto the ground."""
    forward = camera_to_world[..., :3, 2].clone()
    forward[..., 2] = 0.0
    forward = F.normalize(forward, dim=-1, eps=1e-6)
    up = torch.tensor(UP, dtype=forward.dtype, device=forward.device).expand_as(forward)
    right = torch.cross(forward, up, dim=-1)
    return torch.stack([right, forward, up], dim=-2)


def view_frame_targets(joints: torch.Tensor, camera_to_world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets of the body encoder: character-frame joints `(..., J, 3)` seen by a camera
    `(..., 4, 4)` -> (root-relative joints in the view frame `(..., J, 3)`, root `(..., 3)`: right and forward of
    the camera's foot, and height above the ground)."""
    rotation = view_frame_rotation(camera_to_world)
    relative = torch.einsum("...ij,...kj->...ki", rotation, joints - joints[..., :1, :])
    offset = torch.einsum("...ij,...j->...i", rotation, joints[..., 0, :] - camera_to_world[..., :3, 3])
    root = torch.stack([offset[..., 0], offset[..., 1], joints[..., 0, 2]], dim=-1)
    return relative, root


def body_facing(joints: torch.Tensor) -> torch.Tensor:
    """Unit horizontal direction a body faces, from its hips and shoulders: `(..., J, 3)` -> `(..., 3)`."""
    left = (joints[..., LEFT_HIP, :] - joints[..., RIGHT_HIP, :]) + (joints[..., LEFT_SHOULDER, :] - joints[..., RIGHT_SHOULDER, :])
    left = torch.stack([left[..., 0], left[..., 1], torch.zeros_like(left[..., 0])], dim=-1)
    up = torch.tensor(UP, dtype=joints.dtype, device=joints.device).expand_as(left)
    return F.normalize(torch.cross(left, up, dim=-1), dim=-1, eps=1e-6)  # the character frame's facing is -Y


def heading_rotation(facing: torch.Tensor) -> torch.Tensor:
    """The rotation about Z `(..., 3, 3)` that turns a facing direction `(..., 3)` to the character frame's -Y."""
    angle = torch.atan2(facing[..., 0], -facing[..., 1])  # 0 when already facing -Y
    cos, sin = torch.cos(-angle), torch.sin(-angle)
    zero, one = torch.zeros_like(cos), torch.ones_like(cos)
    return torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1),
                        torch.stack([zero, zero, one], -1)], dim=-2)


def character_frame_anchors(anchors: torch.Tensor, root: torch.Tensor, first_anchors: torch.Tensor | None = None,
                            first_root: torch.Tensor | None = None) -> torch.Tensor:
    """View-frame anchors `(B, F, K, 3)` and roots `(B, F, 3)` of a clip -> character-frame anchors `(B, F, K, 3)`.

    The character frame is the body's own at the clip's first frame: origin on the ground under the root, facing
    -Y. `first_anchors` `(B, K, 3)` / `first_root` `(B, 3)` give that first frame when it is not `anchors[:, 0]`
    (training sees single frames). The facing is read from the predicted hips and shoulders, so a body seen from
    behind must be recognised as such by the encoder.
    """
    first_anchors = anchors[:, 0] if first_anchors is None else first_anchors
    first_root = root[:, 0] if first_root is None else first_root
    turn = heading_rotation(body_facing(first_anchors))[:, None]  # (B, 1, 3, 3)
    return turned_anchors(anchors, first_anchors, turn) + character_frame_root(root, first_root, turn)[:, :, None]


def turned_anchors(anchors: torch.Tensor, first_anchors: torch.Tensor, turn: torch.Tensor | None = None) -> torch.Tensor:
    """Root-relative view-frame anchors `(B, F, K, 3)` turned into the character frame's axes by the facing of the
    clip's first frame `(B, K, 3)` (the pose part of `character_frame_anchors`, without the root's travel); `turn`
    `(B, 1, 3, 3)` when the caller has it already."""
    turn = heading_rotation(body_facing(first_anchors))[:, None] if turn is None else turn
    return torch.einsum("bfij,bfkj->bfki", turn, anchors)


def character_frame_root(root: torch.Tensor, first_root: torch.Tensor, turn: torch.Tensor) -> torch.Tensor:
    """View-frame roots `(B, F, 3)` -> the root's place in the character frame `(B, F, 3)`: its travel since the
    first frame, turned by `turn` `(B, 1, 3, 3)`, and its height."""
    travel = root - first_root[:, None]  # (B, F, 3)
    travel = torch.stack([travel[..., 0], travel[..., 1], torch.zeros_like(travel[..., 0])], dim=-1)
    return torch.einsum("bfij,bfj->bfi", turn, travel) + \
        torch.stack([torch.zeros_like(root[..., 0]), torch.zeros_like(root[..., 0]), root[..., 2]], dim=-1)


def smooth_in_time(values: torch.Tensor, sigma_frames: float) -> torch.Tensor:
    """Values of consecutive frames `(F, ...)` smoothed along the first axis by a Gaussian of `sigma_frames` (the
    ends repeated); a clip shorter than 3 frames, or sigma 0, comes back as it is."""
    if values.shape[0] < 3 or sigma_frames <= 0:
        return values
    radius = int(3 * sigma_frames)
    offsets = torch.arange(-radius, radius + 1, dtype=values.dtype, device=values.device)
    kernel = torch.exp(-0.5 * (offsets / sigma_frames) ** 2)
    channels = values.reshape(values.shape[0], -1).T[:, None]  # (C, 1, F)
    padded = F.pad(channels, (radius, radius), mode="replicate")
    smoothed = F.conv1d(padded, (kernel / kernel.sum()).view(1, 1, -1))[:, 0]  # (C, F)
    return smoothed.T.reshape(values.shape)


# How far a still body seems to travel in depth from the jitter of the per-frame scale fit alone (metres): the 90th
# percentile over the training clips' still driving views (median 0.05 m). A track's depth travel is shrunk by
# M^2 / (M^2 + noise^2), M its largest excursion, so a still body stays put while a walk keeps its travel.
TRAVEL_NOISE_M = 0.15


def root_from_track(joints_px: torch.Tensor, anchors: torch.Tensor, root: torch.Tensor, image_width: int,
                    smooth_frames: float = 3.0, travel_noise: float = TRAVEL_NOISE_M,
                    focal: float | None = None) -> torch.Tensor:
    """The root's place in the view frame over a clip `(F, 3)`, from the body's 2D track in the driving frames.

    A single crop cannot say how far the body has travelled, but a clip can: per frame a weak-perspective fit of the
    predicted 3D trunk and legs (anchors `(F, 22, 3)`, right/up axes) to the predicted 2D joints `(F, >=22, 2)` (frame
    pixels), smoothed over `smooth_frames`,
    gives the body's scale s (pixels per metre) and the pelvis' image position; depth is f / s and sideways
    position (u - cx) / s. The focal length f, which no video states, is the median over frames of the root head's
    distance times s (`root` `(F, 3)` from the encoder), so errors of the distance head do not jitter the travel;
    `focal` (pixels) replaces it when given (`locomotion.travelling_anchors`). The depth travel is then shrunk towards
    none by `travel_noise` (`TRAVEL_NOISE_M`).
    """
    points = joints_px[:, list(TRUNK)].to(anchors)
    body = torch.stack([anchors[:, list(TRUNK), 0], -anchors[:, list(TRUNK), 2]], dim=-1)  # image x right, y down
    q = points - points.mean(1, keepdim=True)
    p = body - body.mean(1, keepdim=True)
    scale = ((q * p).sum((1, 2)) / p.pow(2).sum((1, 2)).clamp_min(1e-6)).clamp_min(1e-3)  # (F,) px per metre
    pelvis_u = points.mean(1)[:, 0] - scale * body.mean(1)[:, 0]
    scale, pelvis_u = torch.exp(smooth_in_time(torch.log(scale), smooth_frames)), smooth_in_time(pelvis_u, smooth_frames)
    if focal is None:
        focal = (root[:, 1].clamp_min(0.5) * scale).median()
    depth = focal / scale
    if travel_noise > 0:
        travel = depth - depth[0]
        excursion = travel.pow(2).max()
        depth = depth[0] + travel * excursion / (excursion + travel_noise ** 2)
    sideways = (pelvis_u - image_width / 2) / scale
    return torch.stack([sideways, depth, root[:, 2]], dim=-1)


def facing_error_deg(predicted_anchors: torch.Tensor, true_anchors: torch.Tensor) -> torch.Tensor:
    """Angle between the facing of two poses `(..., J, 3)` in degrees `(...)`; > 90 is a front/back confusion."""
    cosine = (body_facing(predicted_anchors) * body_facing(true_anchors)).sum(-1).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cosine))


def box_features(boxes: torch.Tensor, image_width: int, image_height: int) -> torch.Tensor:
    """Crop boxes `(..., 4)` [x0, y0, x1, y1] in pixels -> (centre x, centre y, side) in image heights, centred."""
    centre_x = (boxes[..., 0] + boxes[..., 2]) / 2 - image_width / 2
    centre_y = (boxes[..., 1] + boxes[..., 3]) / 2 - image_height / 2
    side = torch.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    return torch.stack([centre_x, centre_y, side], dim=-1) / float(image_height)


__all__ = ["AnchoredMotionEncoder", "box_features", "character_frame_anchors", "facing_error_deg", "smooth_in_time",
           "view_frame_targets", "view_frame_rotation"]
