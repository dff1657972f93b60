"""`dimo cache-latents`: encode the training clips' target windows with the VAE once, stored beside each clip."""

from __future__ import annotations

import argparse

HELP = "encode training clips with the VAE once so training never runs the encoder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.train import add_arguments as add_training_arguments

    add_training_arguments(parser)  # the same config decides the VAE, window size and dataset
    parser.add_argument("--overwrite", action="store_true", help="encode again even where a cache of this VAE exists")


def run(args: argparse.Namespace) -> int:
    from accelerate import PartialState

    from dimo_engine.clips import ClipDataset
    from training.cache_latents import cache_dataset_latents
    from training.train import build_pipeline, config_from_args

    config = config_from_args(args)
    state = PartialState()  # several processes (accelerate launch) share the clips
    pipe = build_pipeline(config)
    count = cache_dataset_latents(
        ClipDataset(config.dataset, config.split), pipe.vae.to(state.device), config.num_frames, config.height,
        config.width, config.window_stride, overwrite=args.overwrite, rank=state.process_index,
        world_size=state.num_processes,
    )
    print(f"cached latents: {count} view files written under {config.dataset}/{config.split}")
    return 0
