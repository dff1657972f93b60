"""The DiMo video DiT: diffusers' Wan blocks plus motion cross-attention, Plücker camera input and an in-context
reference frame.

What is new over `WanTransformer3DModel` (whose module names are kept so `from_wan` copies weights 1:1):
- `motion_blocks`: after every N-th Wan block, a residual cross-attention from each latent frame to the motion
  tokens of its own video frames (temporally aligned, like diffusers' Wan-Animate face adapter), output
  projection zero-initialised; a diffusers attention module whose processor (`MotionAttnProcessor`) calls
  `dispatch_attention_fn`, so `attn_processors`, `set_attn_processor` and attention backends reach it;
- `camera_embedding`: Plücker rays packed 4 frames per latent frame, pixel-unshuffled to latent resolution and
  added to the patch tokens through a zero-initialised Conv3d;
- the reference image's latent as an extra clean frame (timestep 0) in front of the video, with its own rays;
  its output is dropped;
- `null_text_embedding`: a learned stand-in when no text encoder is used;
- optional `control_embedding` (`control_channels` > 0, off in DiMo itself): a pixel-aligned control map (the
  benchmark's baselines: 2D pose heatmaps, projected 3D joints) packed and added to the patch tokens like the
  rays, through a zero-initialised Conv3d.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.loaders import PeftAdapterMixin
from diffusers.models.attention import AttentionMixin, AttentionModuleMixin
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import FP32LayerNorm
from diffusers.models.transformers.transformer_wan import (
    WanRotaryPosEmbed,
    WanTimeTextImageEmbedding,
    WanTransformer3DModel,
    WanTransformerBlock,
)
from diffusers.utils import BaseOutput, apply_lora_scale
from einops import rearrange
from torch import nn

from dimo_engine.errors import InputError
from dimo_engine.models.conditioning import pack_motion_per_latent_frame, pack_rays_per_latent_frame

# The Wan constructor arguments; everything else in DiMo's config is new.
WAN_CONFIG_KEYS = (
    "patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim",
    "freq_dim", "ffn_dim", "num_layers", "cross_attn_norm", "qk_norm", "eps", "image_dim", "added_kv_proj_dim",
    "rope_max_seq_len", "pos_embed_seq_len",
)


@dataclass
class DiMoTransformerOutput(BaseOutput):
    """sample: predicted velocity for the video latents `(B, C, T, H, W)` (reference frame already dropped)."""

    sample: torch.Tensor


class MotionAttnProcessor:
    """Motion cross-attention through diffusers' `dispatch_attention_fn`, so attention backends apply to it: each
    latent frame's patch tokens attend only to the motion tokens of the video frames folded into it (the frame axis
    joins the batch axis)."""

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: "MotionCrossAttention",
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """hidden_states `(B, T*S, dim)` frame-major; encoder_hidden_states: motion keys `(B, T, M, dim)` ->
        residual `(B, T*S, dim)`."""
        num_latent_frames = encoder_hidden_states.shape[1]
        query = rearrange(attn.to_q(attn.norm_q(hidden_states)), "b (t s) (h d) -> (b t) s h d",
                          t=num_latent_frames, h=attn.heads)
        query = attn.q_rms(query)
        motion = attn.norm_kv(encoder_hidden_states)
        key = attn.k_rms(rearrange(attn.to_k(motion), "b t m (h d) -> (b t) m h d", h=attn.heads))
        value = rearrange(attn.to_v(motion), "b t m (h d) -> (b t) m h d", h=attn.heads)
        attended = dispatch_attention_fn(
            query, key.to(query.dtype), value.to(query.dtype), attn_mask=attention_mask,
            backend=self._attention_backend, parallel_config=None,
        )  # ((B*T), S, heads, head_dim)
        attended = rearrange(attended, "(b t) s h d -> b (t s) (h d)", t=num_latent_frames)
        return attn.to_out(attended)


class MotionCrossAttention(nn.Module, AttentionModuleMixin):
    """Each latent frame's patch tokens attend to the motion tokens of the video frames folded into it.

    A diffusers attention module: the work is its processor's (`MotionAttnProcessor` by default), so the model's
    `attn_processors` / `set_attn_processor` and `set_attention_backend` reach it as they reach Wan's own attention.
    """

    _default_processor_cls = MotionAttnProcessor
    _available_processors = [MotionAttnProcessor]
    _supports_qkv_fusion = False  # queries and keys read different streams, each with its own norm

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, processor=None):
        super().__init__()
        self.heads = num_heads
        self.norm_q = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.norm_kv = nn.LayerNorm(dim, eps, elementwise_affine=False)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.q_rms = nn.RMSNorm(dim // num_heads, eps=eps)
        self.k_rms = nn.RMSNorm(dim // num_heads, eps=eps)
        self.to_out = nn.Linear(dim, dim)
        self.zero_init()
        self.set_processor(processor if processor is not None else self._default_processor_cls())

    def zero_init(self):
        """Zero the output projection so a fresh block adds nothing (the backbone starts unchanged)."""
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """hidden_states `(B, T*S, dim)` frame-major; encoder_hidden_states: motion `(B, T, M, dim)` -> residual
        `(B, T*S, dim)`."""
        return self.processor(self, hidden_states, encoder_hidden_states, attention_mask, **kwargs)


class DiMoTransformer3DModel(ModelMixin, ConfigMixin, PeftAdapterMixin, AttentionMixin):
    """Wan DiT with motion tokens, target cameras and a reference frame (see the module docstring).

    Wan's mixins where they apply: `PeftAdapterMixin` (LoRA, scaled by `attention_kwargs={"scale": ...}`) and
    `AttentionMixin` (`attn_processors` lists Wan's attention and the motion cross-attention). Not Wan's
    `CacheMixin` (block caches would skip Wan blocks but not the motion residuals between them) nor
    `FromOriginalModelMixin` (there is no original-format DiMo checkpoint).

    New config entries: `motion_dim` (width of the encoders' tokens), `motion_every_n_blocks`,
    `temporal_factor` (video frames per latent frame, the VAE's), `camera_unshuffle` (rays are given at
    `camera_unshuffle` x the latent resolution), `null_text_length`, `control_channels` and `control_kind` (a
    baseline's pixel-aligned control map: its channels and what it shows; 0 and "none" for DiMo).
    """

    _supports_gradient_checkpointing = True
    _skip_layerwise_casting_patterns = ["patch_embedding", "camera_embedding", "control_embedding", "condition_embedder", "norm"]
    _no_split_modules = ["WanTransformerBlock", "MotionCrossAttention"]
    _keep_in_fp32_modules = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 4,
        attention_head_dim: int = 64,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 256,
        freq_dim: int = 256,
        ffn_dim: int = 1024,
        num_layers: int = 8,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        motion_dim: int = 128,
        motion_every_n_blocks: int = 1,
        temporal_factor: int = 4,
        camera_unshuffle: int = 4,
        null_text_length: int = 1,
        control_channels: int = 0,
        control_kind: str = "none",
    ) -> None:
        super().__init__()
        if patch_size[0] != 1:
            raise InputError(f"DiMo needs a temporal patch size of 1 for its reference frame, not {patch_size[0]}.")
        inner_dim = num_attention_heads * attention_head_dim
        out_channels = out_channels or in_channels

        # Wan's modules, same names as WanTransformer3DModel.
        self.rope = WanRotaryPosEmbed(attention_head_dim, patch_size, rope_max_seq_len)
        self.patch_embedding = nn.Conv3d(in_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.condition_embedder = WanTimeTextImageEmbedding(
            dim=inner_dim, time_freq_dim=freq_dim, time_proj_dim=inner_dim * 6, text_embed_dim=text_dim,
            image_embed_dim=image_dim, pos_embed_seq_len=pos_embed_seq_len,
        )
        self.blocks = nn.ModuleList(
            [
                WanTransformerBlock(inner_dim, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps,
                                    added_kv_proj_dim)
                for _ in range(num_layers)
            ]
        )
        self.norm_out = FP32LayerNorm(inner_dim, eps, elementwise_affine=False)
        self.proj_out = nn.Linear(inner_dim, out_channels * math.prod(patch_size))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, inner_dim) / inner_dim**0.5)

        # New: motion, camera, reference and null text.
        self.motion_embedder = nn.Sequential(nn.LayerNorm(motion_dim), nn.Linear(motion_dim, inner_dim))
        self.motion_subframe_embedding = nn.Parameter(torch.randn(1, 1, temporal_factor, 1, inner_dim) * 0.02)
        self.null_motion_tokens = nn.Parameter(torch.randn(1, 1, 1, motion_dim) * 0.02)
        self.motion_blocks = nn.ModuleList(
            [MotionCrossAttention(inner_dim, num_attention_heads, eps)
             for _ in range(math.ceil(num_layers / motion_every_n_blocks))]
        )
        camera_channels = 6 * temporal_factor * camera_unshuffle**2
        self.camera_embedding = nn.Conv3d(camera_channels, inner_dim, kernel_size=patch_size, stride=patch_size)
        self.null_text_embedding = nn.Parameter(torch.zeros(1, null_text_length, text_dim))
        if control_channels:
            self.control_embedding = nn.Conv3d(control_channels * temporal_factor * camera_unshuffle**2, inner_dim,
                                               kernel_size=patch_size, stride=patch_size)
        self.zero_init_new_layers()
        self.gradient_checkpointing = False

    @torch.no_grad()
    def zero_init_new_layers(self):
        """Zero the output projections of every new branch, so the model equals its Wan backbone."""
        for block in self.motion_blocks:
            block.zero_init()
        nn.init.zeros_(self.camera_embedding.weight)
        nn.init.zeros_(self.camera_embedding.bias)
        if self.config.control_channels:
            nn.init.zeros_(self.control_embedding.weight)
            nn.init.zeros_(self.control_embedding.bias)

    @classmethod
    def from_wan(cls, path_or_model, **dimo_config) -> "DiMoTransformer3DModel":
        """Build from a diffusers `WanTransformer3DModel` (a local folder or an instance): copy its weights 1:1,
        add the new branches zero-initialised. `dimo_config` sets the new entries (motion_dim, ...)."""
        if isinstance(path_or_model, WanTransformer3DModel):
            wan = path_or_model
        else:
            try:
                wan = WanTransformer3DModel.from_pretrained(path_or_model, local_files_only=True)
            except (OSError, EnvironmentError) as error:
                raise InputError(
                    f"{path_or_model}: no diffusers WanTransformer3DModel folder there ({error}); give the "
                    f"'transformer' folder of a local Wan checkpoint."
                ) from None
        config = {key: wan.config[key] for key in WAN_CONFIG_KEYS if key in wan.config}
        config["patch_size"] = tuple(config["patch_size"])
        model = cls.from_config({**config, **dimo_config})
        missing, unexpected = model.load_state_dict(wan.state_dict(), strict=False)
        new_prefixes = ("motion_", "null_", "camera_embedding", "control_embedding")
        not_copied = [key for key in missing if not key.startswith(new_prefixes)]
        if not_copied or unexpected:
            raise InputError(f"Wan weights do not fit DiMo: missing {not_copied[:5]}, unexpected {unexpected[:5]}.")
        model.zero_init_new_layers()
        return model if wan.dtype == model.dtype else model.to(wan.dtype)

    def null_motion(self, batch_size: int, num_frames: int) -> torch.Tensor:
        """The learned 'no motion' tokens `(B, F, 1, motion_dim)`: the unconditional branch of guidance."""
        return self.null_motion_tokens.expand(batch_size, num_frames, 1, -1)

    def drop_motion(self, motion_tokens: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """Training's classifier-free dropout: samples where `drop` `(B,)` is True get the null tokens."""
        null = self.null_motion_tokens.expand_as(motion_tokens).to(motion_tokens.dtype)
        return torch.where(drop.view(-1, 1, 1, 1), null, motion_tokens)

    def _camera_tokens(self, rays: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
        """Packed rays `(B, 6*g, T, h*r, w*r)` -> tokens `(B, T*h'*w', dim)` for the latent grid (h, w)."""
        r = self.config.camera_unshuffle
        if rays.shape[-2:] != (latent_hw[0] * r, latent_hw[1] * r):
            raise InputError(
                f"Camera rays are {tuple(rays.shape[-2:])} pixels; for latents of {latent_hw} give rays at "
                f"{(latent_hw[0] * r, latent_hw[1] * r)} (camera_unshuffle={r})."
            )
        rays = rearrange(rays, "b c t (h r1) (w r2) -> b (c r1 r2) t h w", r1=r, r2=r)
        return self.camera_embedding(rays.to(self.camera_embedding.weight.dtype)).flatten(2).transpose(1, 2)

    def _control_tokens(self, control_maps: torch.Tensor, ray_hw: tuple[int, int], num_latent_frames: int,
                        has_reference: bool) -> torch.Tensor:
        """Control maps `(B, Cc, F, h*r, w*r)` -> tokens `(B, T(+1)*h'*w', dim)`; the reference frame gets none."""
        cfg = self.config
        if control_maps.ndim != 5 or control_maps.shape[1] != cfg.control_channels or control_maps.shape[-2:] != ray_hw:
            raise InputError(
                f"Control maps have shape {tuple(control_maps.shape)}; this {cfg.control_kind!r} model takes "
                f"(B, {cfg.control_channels}, frames, {ray_hw[0]}, {ray_hw[1]}), at the camera rays' resolution."
            )
        if (control_maps.shape[2] - 1) // cfg.temporal_factor + 1 != num_latent_frames:
            raise InputError(f"Control maps cover {control_maps.shape[2]} frames; give one map per video frame.")
        packed = pack_rays_per_latent_frame(control_maps, cfg.temporal_factor)  # (B, Cc*g, T, h*r, w*r)
        if has_reference:
            packed = torch.cat([packed.new_zeros(*packed.shape[:2], 1, *ray_hw), packed], dim=2)
        r = cfg.camera_unshuffle
        packed = rearrange(packed, "b c t (h r1) (w r2) -> b (c r1 r2) t h w", r1=r, r2=r)
        return self.control_embedding(packed.to(self.control_embedding.weight.dtype)).flatten(2).transpose(1, 2)

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        motion_tokens: torch.Tensor | None = None,
        camera_rays: torch.Tensor | None = None,
        reference_latents: torch.Tensor | None = None,
        reference_rays: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        use_motion: bool = True,
        return_dict: bool = True,
        control_maps: torch.Tensor | None = None,
        attention_kwargs: dict | None = None,
    ):
        """One DiT evaluation (what the pipeline's loop and training's loss call).

        Args:
            hidden_states: noisy video latents `(B, C, T, H, W)`, T = (num_frames - 1) / temporal_factor + 1.
            timestep: `(B,)` or scalar, scheduler scale (0..1000).
            motion_tokens: `(B, num_frames, K, motion_dim)` (body and hand tokens concatenated on K); None means
                the null tokens (unconditional).
            camera_rays: Plücker rays of the target frames `(B, 6, num_frames, H*r, W*r)`, r = camera_unshuffle
                (`DiMoPipeline.camera_rays`); None = no camera input.
            reference_latents: clean latent of the reference image `(B, C, 1, H, W)`, placed in front (in-context).
            reference_rays: its rays `(B, 6, 1, H*r, W*r)`.
            encoder_hidden_states: text embeddings `(B, L, text_dim)`; None uses the learned null embedding.
            use_motion: False skips the motion branch entirely (benchmarks, backbone checks).
            control_maps: a baseline's pixel-aligned control `(B, control_channels, num_frames, H*r, W*r)`; only for
                models built with `control_channels` > 0 (None: no control).
            attention_kwargs: as Wan's: `{"scale": s}` scales loaded LoRA adapters.
        """
        cfg = self.config
        batch, _, num_latent_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = cfg.patch_size
        if height % p_h or width % p_w:
            raise InputError(f"Latents of {height}x{width} do not split into {p_h}x{p_w} patches.")
        timestep = timestep.reshape(-1).expand(batch) if timestep.numel() in (1, batch) else timestep
        has_reference = reference_latents is not None
        if has_reference:
            hidden_states = torch.cat([reference_latents.to(hidden_states.dtype), hidden_states], dim=2)
        total_frames = hidden_states.shape[2]
        grid = (height // p_h, width // p_w)
        tokens_per_frame = grid[0] * grid[1]

        rotary_emb = self.rope(hidden_states)
        tokens = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2)  # (B, T'*h*w, dim)

        if camera_rays is not None or reference_rays is not None:
            g = cfg.temporal_factor
            ray_hw = (grid[0] * p_h * cfg.camera_unshuffle, grid[1] * p_w * cfg.camera_unshuffle)
            groups = []
            if has_reference:
                ref = reference_rays if reference_rays is not None else hidden_states.new_zeros(batch, 6, 1, *ray_hw)
                groups.append(pack_rays_per_latent_frame(ref.expand(-1, -1, g + 1, -1, -1), g)[:, :, :1])
            if camera_rays is not None:
                if (camera_rays.shape[2] - 1) // g + 1 != num_latent_frames:
                    raise InputError(
                        f"Camera rays cover {camera_rays.shape[2]} frames but the latents have {num_latent_frames} "
                        f"latent frames ({(num_latent_frames - 1) * g + 1} video frames); give one camera per frame."
                    )
                groups.append(pack_rays_per_latent_frame(camera_rays, g))
            else:
                groups.append(hidden_states.new_zeros(batch, 6 * g, num_latent_frames, *ray_hw))
            tokens = tokens + self._camera_tokens(torch.cat(groups, dim=2), (height, width))
        if control_maps is not None:
            if not cfg.control_channels:
                raise InputError("This model has no control branch (control_channels = 0); give no control maps.")
            ray_hw = (grid[0] * p_h * cfg.camera_unshuffle, grid[1] * p_w * cfg.camera_unshuffle)
            tokens = tokens + self._control_tokens(control_maps, ray_hw, num_latent_frames, has_reference)
        tokens = tokens.contiguous()

        # Clean reference tokens get timestep 0 (per-token timesteps, as Wan 2.2 TI2V).
        if has_reference:
            token_timestep = torch.cat(
                [torch.zeros(batch, tokens_per_frame, device=timestep.device, dtype=timestep.dtype),
                 timestep[:, None].expand(batch, num_latent_frames * tokens_per_frame)], dim=1
            )  # (B, S)
            temb, timestep_proj, text, _ = self.condition_embedder(
                token_timestep.flatten(), self._text(encoder_hidden_states, batch), None,
                timestep_seq_len=token_timestep.shape[1],
            )
            timestep_proj = timestep_proj.unflatten(2, (6, -1))  # (B, S, 6, dim)
        else:
            temb, timestep_proj, text, _ = self.condition_embedder(timestep, self._text(encoder_hidden_states, batch))
            timestep_proj = timestep_proj.unflatten(1, (6, -1))  # (B, 6, dim)

        motion = self._motion_keys(motion_tokens, batch, num_latent_frames, has_reference) if use_motion else None

        checkpointing = torch.is_grad_enabled() and self.gradient_checkpointing
        for index, block in enumerate(self.blocks):
            if checkpointing:
                tokens = self._gradient_checkpointing_func(block, tokens, text, timestep_proj, rotary_emb)
            else:
                tokens = block(tokens, text, timestep_proj, rotary_emb)
            if motion is not None and index % cfg.motion_every_n_blocks == 0:
                motion_block = self.motion_blocks[index // cfg.motion_every_n_blocks]
                if checkpointing:
                    tokens = tokens + self._gradient_checkpointing_func(motion_block, tokens, motion)
                else:
                    tokens = tokens + motion_block(tokens, motion)

        if temb.ndim == 3:
            shift, scale = (self.scale_shift_table.unsqueeze(0) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        tokens = (self.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        tokens = self.proj_out(tokens)
        if has_reference:
            tokens = tokens[:, tokens_per_frame:]
        output = rearrange(
            tokens, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)",
            t=total_frames - int(has_reference), h=grid[0], w=grid[1], pt=p_t, ph=p_h, pw=p_w,
        )  # (B, C, T, H, W)
        if not return_dict:
            return (output,)
        return DiMoTransformerOutput(sample=output)

    def _text(self, encoder_hidden_states: torch.Tensor | None, batch: int) -> torch.Tensor:
        if encoder_hidden_states is None:
            return self.null_text_embedding.expand(batch, -1, -1)
        return encoder_hidden_states

    def _motion_keys(self, motion_tokens, batch: int, num_latent_frames: int, has_reference: bool) -> torch.Tensor:
        """Motion tokens `(B, F, K, Dm)` -> per-latent-frame keys `(B, T(+1), g*K, dim)`; the reference frame
        (and a missing motion) reads the null tokens."""
        g = self.config.temporal_factor
        num_frames = (num_latent_frames - 1) * g + 1
        if motion_tokens is None:
            motion_tokens = self.null_motion(batch, num_frames)
        if motion_tokens.ndim != 4 or motion_tokens.shape[-1] != self.config.motion_dim:
            raise InputError(
                f"Motion tokens have shape {tuple(motion_tokens.shape)}; give (B, frames, K, "
                f"{self.config.motion_dim}) from the pipeline's encode_motion."
            )
        if motion_tokens.shape[1] != num_frames:
            raise InputError(
                f"Motion tokens cover {motion_tokens.shape[1]} frames but the video has {num_frames}; "
                f"encode the driving video at the model's frame count."
            )
        motion_tokens = motion_tokens.expand(batch, -1, -1, -1)
        keys = self.motion_embedder(motion_tokens.to(self.motion_embedder[1].weight.dtype))  # (B, F, K, dim)
        keys = pack_motion_per_latent_frame(keys, g) + self.motion_subframe_embedding  # (B, T, g, K, dim)
        keys = keys.flatten(2, 3)  # (B, T, g*K, dim)
        if has_reference:
            null = self.motion_embedder(self.null_motion_tokens.to(keys.dtype)).expand(batch, 1, keys.shape[2], -1)
            keys = torch.cat([null, keys], dim=1)
        return keys
