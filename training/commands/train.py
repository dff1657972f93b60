"""`dimo train`: train DiMo on rendered clips (training/train.py) from a config file plus overrides by field name."""

from __future__ import annotations

import argparse
import json

HELP = "train DiMo on rendered clips (accelerate; configs in training/configs)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.train import add_arguments as add_training_arguments

    add_training_arguments(parser)
    parser.epilog = "Any config field can be overridden: --max-steps 20 or --set max_steps=20 (see training/config.py)."


def run(args: argparse.Namespace) -> int:
    from training.train import config_from_args, train

    summary = train(config_from_args(args), resume=args.resume)
    print(json.dumps(summary))
    return 0
