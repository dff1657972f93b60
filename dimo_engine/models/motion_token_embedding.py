"""The benchmark baselines' motion features: one learned feature per motion token, in place of a video encoder.

The character pipeline's explicit-control baselines (`motion_signal` "pose2d" and "noisy3d") are given their
joints (the driving view's 2D joints, or 3D joints with reconstruction noise) rather than reading them from the
driving video, so each token's feature says only which joint it is: a learned vector per token, trained with the
generator. It fills the splat's feature channels, so the generator reads the same channels as DiMo's.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class MotionTokenEmbedding(ModelMixin, ConfigMixin):
    """A learned feature per motion token (22 body joints, then the left and right hand).

    `forward(batch, frames)` -> features `(batch, frames, num_tokens, feature_dim)`, the same for every frame.
    """

    @register_to_config
    def __init__(self, num_tokens: int = 24, feature_dim: int = 16):
        super().__init__()
        self.features = nn.Parameter(torch.randn(num_tokens, feature_dim))  # (K, D)

    def forward(self, batch: int, frames: int) -> torch.Tensor:
        return self.features[None, None].expand(batch, frames, -1, -1)
