"""Motion encoders: driving frames (or hand crops) become a few view-agnostic motion tokens per frame.

A small ViT tokenizer after 3DiMo: each image is patchified, K learnable motion tokens are prepended,
transformer blocks run, and only the K tokens leave, so nothing ties the code to the driving camera's
pixel layout. Auxiliary pose heads (used by training only) regress SMPL-H joint rotations from the tokens.
"""

from __future__ import annotations

import roma
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from kornia.geometry.transform import crop_and_resize
from torch import nn

from dimo_engine.errors import InputError


class MotionEncoder(ModelMixin, ConfigMixin):
    """Per-frame motion tokenizer (body: one person-centred image per frame; hands: two crops per frame).

    Args:
        image_size: images are resized to this square size before patchifying.
        patch_size: side of the square patches.
        num_crops: images per frame (1 for the body, 2 for the left and right hand); each crop gets its own
            learned embedding and its own K tokens.
        num_motion_tokens: K, motion tokens per crop.
        dim: width of the encoder.
        motion_dim: width of the output tokens (what the DiT's motion cross-attention reads).
        num_layers / num_heads: transformer blocks (torch SDPA inside `nn.TransformerEncoderLayer`).
        temporal_kernel: kernel of the depthwise 1D convolution that mixes each token across neighbouring frames.
        aux_joints: joints the auxiliary pose head predicts per crop (body: 22 = root + 21 body joints; hands: 15).

    `forward(images)` maps `(B, F, C, H, W)` (num_crops == 1) or `(B, F, num_crops, C, H, W)` float in [0, 1]
    to motion tokens `(B, F, num_crops * K, motion_dim)`.
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 64,
        patch_size: int = 8,
        num_crops: int = 1,
        num_motion_tokens: int = 4,
        dim: int = 128,
        motion_dim: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        temporal_kernel: int = 3,
        aux_joints: int = 22,
    ):
        super().__init__()
        if image_size % patch_size:
            raise InputError(f"MotionEncoder: image_size {image_size} must be a multiple of patch_size {patch_size}.")
        num_patches = (image_size // patch_size) ** 2
        self.patch_embedding = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.patch_position = nn.Parameter(torch.randn(1, num_patches, dim) * 0.02)
        self.motion_queries = nn.Parameter(torch.randn(1, num_crops, num_motion_tokens, dim) * 0.02)
        self.crop_embedding = nn.Parameter(torch.zeros(1, num_crops, 1, dim))
        self.blocks = nn.ModuleList(
            [
                nn.TransformerEncoderLayer(
                    dim, num_heads, dim_feedforward=4 * dim, dropout=0.0, activation="gelu",
                    batch_first=True, norm_first=True,
                )
                for _ in range(num_layers)
            ]
        )
        self.norm_out = nn.LayerNorm(dim)
        # Why depthwise: mixes each token channel over time only, cheap and cannot reintroduce spatial layout.
        self.temporal_mixing = nn.Conv1d(
            dim, dim, kernel_size=temporal_kernel, padding=temporal_kernel // 2, groups=dim
        )
        nn.init.zeros_(self.temporal_mixing.weight)
        nn.init.zeros_(self.temporal_mixing.bias)
        self.proj_out = nn.Linear(dim, motion_dim)
        self.pose_head = nn.Sequential(
            nn.LayerNorm(num_motion_tokens * motion_dim),
            nn.Linear(num_motion_tokens * motion_dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, aux_joints * 6),
        )
        # The head predicts residuals around the identity rotation (see predict_pose) and starts exactly there.
        nn.init.zeros_(self.pose_head[-1].weight)
        nn.init.zeros_(self.pose_head[-1].bias)
        self.gradient_checkpointing = False

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if images.ndim == 5 and cfg.num_crops == 1:
            images = images.unsqueeze(2)
        if images.ndim != 6 or images.shape[2] != cfg.num_crops or images.shape[3] != cfg.in_channels:
            expected = "(B, F, C, H, W)" if cfg.num_crops == 1 else f"(B, F, {cfg.num_crops}, C, H, W)"
            raise InputError(
                f"Motion encoder input has shape {tuple(images.shape)}; give {expected} images with "
                f"C={cfg.in_channels} in [0, 1]."
            )
        batch, frames = images.shape[:2]
        pixels = rearrange(images, "b f n c h w -> (b f n) c h w").to(self.dtype)
        if pixels.shape[-2:] != (cfg.image_size, cfg.image_size):
            pixels = F.interpolate(pixels, size=(cfg.image_size, cfg.image_size), mode="bilinear", antialias=True)
        pixels = pixels * 2.0 - 1.0

        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2) + self.patch_position  # (BFN, P, dim)
        queries = (self.motion_queries + self.crop_embedding).expand(batch * frames, -1, -1, -1)
        queries = rearrange(queries, "bf n k d -> (bf n) k d")  # (BFN, K, dim)
        tokens = torch.cat([queries, patches], dim=1)
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                tokens = self._gradient_checkpointing_func(block, tokens)
            else:
                tokens = block(tokens)
        motion = self.norm_out(tokens[:, : cfg.num_motion_tokens])  # (BFN, K, dim)

        motion = rearrange(motion, "(b f n) k d -> (b n k) d f", b=batch, f=frames)
        motion = motion + self.temporal_mixing(motion)
        motion = rearrange(motion, "(b n k) d f -> b f (n k) d", b=batch, n=cfg.num_crops)
        return self.proj_out(motion)  # (B, F, N*K, motion_dim)

    def predict_pose(self, motion_tokens: torch.Tensor) -> torch.Tensor:
        """Auxiliary head (training only): tokens `(B, F, N*K, D)` -> 6D joint rotations `(B, F, N, aux_joints, 6)`.

        Body encoder: joint 0 is the root orientation relative to the body's own facing, 1..21 the body joints
        (see `body_pose_targets`); hand encoder: N=2 (left, right) x 15 finger joints (see `hand_pose_targets`).
        """
        cfg = self.config
        per_crop = rearrange(motion_tokens, "b f (n k) d -> b f n (k d)", n=cfg.num_crops)
        residual = self.pose_head(per_crop).unflatten(-1, (cfg.aux_joints, 6))
        # Residuals around the identity: a fresh head predicts valid rotations, not near-zero 6D vectors
        # whose Gram-Schmidt normalisation has exploding gradients (NaN within a few steps).
        return residual + IDENTITY_6D.to(residual)


def rotation_6d(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices `(..., 3, 3)` -> continuous 6D representation `(..., 6)` (first two columns)."""
    return rearrange(rotmat[..., :, :2], "... r c -> ... (c r)")


IDENTITY_6D = rotation_6d(torch.eye(3))  # (6,)


def rotmat_from_6d(six_d: torch.Tensor) -> torch.Tensor:
    """Inverse of `rotation_6d` by Gram-Schmidt (roma's special_gramschmidt): `(..., 6)` -> `(..., 3, 3)`."""
    return roma.special_gramschmidt(rearrange(six_d, "... (c r) -> ... r c", c=2))


def body_pose_targets(global_orient: torch.Tensor, body_pose: torch.Tensor) -> torch.Tensor:
    """SMPL-H axis-angle (character frame) -> view-independent 6D targets `(..., 22, 6)` for the body head.

    global_orient `(..., 3)`, body_pose `(..., 21, 3)`. The root orientation has its heading (rotation about
    the character frame's Z axis) removed, so the target says how the body tilts and rolls, not where it faces.
    """
    root = roma.rotvec_to_rotmat(global_orient)  # (..., 3, 3)
    facing = root[..., :, 2]  # SMPL's canonical forward axis (+Z) in the character frame
    heading = torch.atan2(facing[..., 0], -facing[..., 1])  # 0 when facing -Y
    unturn = roma.rotvec_to_rotmat(torch.stack([torch.zeros_like(heading)] * 2 + [-heading], dim=-1))
    root_relative = unturn @ root
    joints = torch.cat([root_relative.unsqueeze(-3), roma.rotvec_to_rotmat(body_pose)], dim=-3)
    return rotation_6d(joints)


def hand_pose_targets(left_hand_pose: torch.Tensor, right_hand_pose: torch.Tensor) -> torch.Tensor:
    """Finger axis-angle `(..., 15, 3)` per hand -> 6D targets `(..., 2, 15, 6)` (left, right) for the hand head."""
    hands = torch.stack([left_hand_pose, right_hand_pose], dim=-3)
    return rotation_6d(roma.rotvec_to_rotmat(hands))


def square_hand_boxes(hand_boxes: torch.Tensor, min_size: float = 8.0) -> torch.Tensor:
    """Boxes `(..., 4)` [x0, y0, x1, y1] -> squares of the longer side around the same centre (hands keep aspect)."""
    centre = (hand_boxes[..., :2] + hand_boxes[..., 2:]) / 2
    side = (hand_boxes[..., 2:] - hand_boxes[..., :2]).amax(dim=-1, keepdim=True).clamp_min(min_size)
    return torch.cat([centre - side / 2, centre + side / 2], dim=-1)


def crop_hands(frames: torch.Tensor, hand_boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut the two hand crops of every frame: frames `(B, F, C, H, W)`, boxes `(B, F, 2, 4)` pixel [x0, y0, x1, y1]
    -> crops `(B, F, 2, C, size, size)`; boxes are squared first and areas outside the image are black."""
    if hand_boxes.shape[:2] != frames.shape[:2] or hand_boxes.shape[2:] != (2, 4):
        raise InputError(
            f"Hand boxes have shape {tuple(hand_boxes.shape)} for frames {tuple(frames.shape)}; give one "
            f"[x0, y0, x1, y1] pixel box per hand and frame, shape (B, F, 2, 4)."
        )
    batch, num_frames = frames.shape[:2]
    boxes = square_hand_boxes(hand_boxes.to(frames.dtype))
    x0, y0, x1, y1 = boxes.unbind(-1)
    # kornia wants the four corners, inclusive pixel positions; our boxes are edges in the top-left convention.
    corners = torch.stack(
        [torch.stack(c, dim=-1) for c in ((x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1))], dim=-2
    )  # (B, F, 2, 4 corners, 2)
    images = frames.unsqueeze(2).expand(-1, -1, 2, -1, -1, -1)
    crops = crop_and_resize(
        rearrange(images, "b f n c h w -> (b f n) c h w"),
        rearrange(corners, "b f n k xy -> (b f n) k xy"),
        (size, size),
    )
    return rearrange(crops, "(b f n) c h w -> b f n c h w", b=batch, f=num_frames)


def encode_motion_tokens(body_encoder: MotionEncoder, hand_encoder: MotionEncoder, frames: torch.Tensor,
                         hand_boxes: torch.Tensor, with_pose: bool = False):
    """Where driving frames become motion tokens, for inference and training alike.

    frames `(B, F, 3, H, W)` in [0, 1], hand_boxes `(B, F, 2, 4)` pixel boxes -> (body tokens `(B, F, Kb, D)`,
    hand tokens `(B, F, Kh, D)`, body pose 6D `(B, F, 1, 22, 6)` or None, hand pose 6D `(B, F, 2, 15, 6)` or None).
    The pose heads are training-only: they run only `with_pose`.
    """
    body = body_encoder(frames)  # (B, F, Kb, D)
    hands = hand_encoder(crop_hands(frames, hand_boxes, hand_encoder.config.image_size))  # (B, F, Kh, D)
    if not with_pose:
        return body, hands, None, None
    return body, hands, body_encoder.predict_pose(body), hand_encoder.predict_pose(hands)

