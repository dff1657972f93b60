"""Which conditions does a trained DiT read? The flow-matching loss on training pairs, as trained and with one
condition taken away at a time, at fixed noise levels and with the same noise.

A condition the model ignores changes the loss by nothing; one it relies on raises it. The benchmark scores
generated videos; this answers the question under them in a minute, and tells an undertrained model (that reads
only the reference's colours) from a broken sampler.

    dimo probe-conditions --config default-model --model dimo_engine/weights/default

Variants (each against "as trained", the inputs training gave it):
- "other reference": the reference latent and camera of another pair (another clip's character and set);
- "null motion": the learned null motion tokens instead of the driving video's (only for models that saw motion);
- "no control": all-zero control maps (only for the baselines' control branch).

Each on the whole frame and on the person's latent cells alone: the person fills ~4 % of a frame, so a model that
follows the motion there can still show almost no change over the whole frame.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from training.config import TrainConfig
from training.losses import flow_matching_loss, noisy_latents, person_coverage

AS_TRAINED = "as trained"
DEFAULT_SIGMAS = (0.25, 0.5, 0.75, 0.95)
REGIONS = ("whole frame", "person")


@dataclasses.dataclass
class ProbeResult:
    """Mean flow loss per region, variant and noise level: `losses[region][variant][sigma]`, over `num_pairs`
    pairs; region "person" weighs each latent cell by how much of it the person covers (`person_coverage`)."""

    losses: dict[str, dict[str, dict[float, float]]]
    num_pairs: int
    token_spread: float = math.nan  # std of the motion tokens across pairs / their mean magnitude (`motion_token_spread`)

    def change(self, variant: str, region: str = "whole frame") -> dict[float, float]:
        """Relative change of the loss against "as trained", per noise level (0.1 = 10 % higher)."""
        base = self.losses[region][AS_TRAINED]
        return {sigma: loss / base[sigma] - 1.0 for sigma, loss in self.losses[region][variant].items()}

    def table(self) -> str:
        sigmas = list(self.losses[REGIONS[0]][AS_TRAINED])
        lines = [f"flow loss on {self.num_pairs} training pairs (change against '{AS_TRAINED}')",
                 "| region | variant | " + " | ".join(f"sigma {s:g}" for s in sigmas) + " |",
                 "| --- | --- |" + " ---: |" * len(sigmas)]
        for region, variants in self.losses.items():
            for variant, losses in variants.items():
                change = self.change(variant, region)
                cells = [f"{losses[s]:.4f}" + ("" if variant == AS_TRAINED else f" ({change[s]:+.1%})") for s in sigmas]
                lines.append(f"| {region} | {variant} | " + " | ".join(cells) + " |")
        lines.append(f"motion tokens: spread across pairs {self.token_spread:.3f} of their magnitude (random "
                     f"tiny-cpu encoders: 0.45; near 0 means the encoder says the same for every driving video)")
        return "\n".join(lines)


def motion_token_spread(tokens: torch.Tensor) -> float:
    """Motion tokens of different driving clips `(N, F, K, D)` -> their std across the clips relative to their mean
    magnitude: how much the tokens depend on the driving video at all. A collapsed encoder gives ~0."""
    return float(tokens.float().std(dim=0).mean() / tokens.float().abs().mean().clamp_min(1e-12))


def probe_conditions(config: TrainConfig, pipe, num_pairs: int = 16, sigmas=DEFAULT_SIGMAS, seed: int = 123,
                     progress=None) -> ProbeResult:
    """The loss table of `pipe` (a trained pipeline) on `num_pairs` pairs of `config`'s dataset, drawn with `seed`.

    The driving frames are not augmented, and every variant of a pair sees the same x0, noise and timestep."""
    from dimo_engine.models.motion_encoder import encode_motion_tokens
    from training.baselines import batch_control_maps
    from training.train import build_dataset, target_latents

    dataset = build_dataset(dataclasses.replace(config, augment_driving=False), pipe, person_masks=True)
    transformer = pipe.transformer.eval()
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_pairs].tolist()
    batches = [{k: v[None] if torch.is_tensor(v) else torch.tensor([v]) for k, v in dataset[i].items()} for i in order]
    num_pairs = len(batches)
    reads_motion = config.motion_dropout < 1.0  # the baselines always got the null tokens
    losses: dict[str, dict[str, dict[float, float]]] = {region: {} for region in REGIONS}
    with torch.no_grad():
        # Each pair's motion tokens once (body and hand, as DiMoTrainingModel concatenates them), for every variant.
        tokens = torch.cat([torch.cat(encode_motion_tokens(pipe.body_encoder.eval(), pipe.hand_encoder.eval(),
                                                           batch["driving_frames"], batch["hand_boxes"])[:2], dim=2)
                            for batch in batches])
        latents = [target_latents(batch, pipe.vae, torch.Generator().manual_seed(seed + i)) for i, batch in enumerate(batches)]
        for i, batch in enumerate(batches):
            x0, reference = latents[i]
            other = (i + max(1, num_pairs // 2)) % num_pairs  # another pair, usually another clip
            control = batch_control_maps(config.control, dataset, batch, config.seed) if config.control != "none" else None
            variants = {AS_TRAINED: (reference, batch["reference_rays"], not reads_motion, control),
                        "other reference": (latents[other][1], batches[other]["reference_rays"], not reads_motion, control)}
            if reads_motion:
                variants["null motion"] = (reference, batch["reference_rays"], True, control)
            if control is not None:
                variants["no control"] = (reference, batch["reference_rays"], not reads_motion, torch.zeros_like(control))
            cell_weights = {"whole frame": None,
                            "person": person_coverage(batch["target_mask"], x0.shape, pipe.vae_scale_factor_temporal)}
            for sigma in sigmas:
                noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed * 7919 + i))
                sigma_t = torch.tensor([float(sigma)])
                noisy = noisy_latents(x0, noise, sigma_t)
                timestep = sigma_t * pipe.scheduler.config.num_train_timesteps
                for name, (ref, ref_rays, drop, maps) in variants.items():
                    velocity = transformer(
                        noisy, timestep, motion_tokens=transformer.drop_motion(tokens[i:i + 1], torch.tensor([drop])),
                        camera_rays=batch["target_rays"], reference_latents=ref, reference_rays=ref_rays,
                        control_maps=maps,
                    ).sample
                    for region, weights in cell_weights.items():
                        loss = float(flow_matching_loss(velocity, x0, noise, sigma_t, cell_weights=weights))
                        by_sigma = losses[region].setdefault(name, {})
                        by_sigma[float(sigma)] = by_sigma.get(float(sigma), 0.0) + loss / num_pairs
            if progress is not None:
                progress(i + 1, num_pairs)
    return ProbeResult(losses, num_pairs, motion_token_spread(tokens) if num_pairs > 1 else math.nan)
