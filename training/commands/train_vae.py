"""`dimo train-vae`: train the pipeline's VAE as an autoencoder on rendered clips (training/train_vae.py),
the first stage of training a model from scratch."""

from __future__ import annotations

import argparse
import json

HELP = "train the pipeline's VAE as an autoencoder on rendered clips (first stage from scratch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.train_vae import add_arguments as add_vae_arguments

    add_vae_arguments(parser)
    parser.epilog = "Writes <out>/pipeline (the whole pipeline with the trained VAE), metrics.jsonl and summary.json."


def run(args: argparse.Namespace) -> int:
    from training.train_vae import config_from_args, train_vae

    print(json.dumps(train_vae(config_from_args(args))))
    return 0
