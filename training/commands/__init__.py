"""The `dimo` subcommands that train and score models: train, train-vae, cache-latents,
probe-conditions and bench-views.

They live with training, not in the engine's CLI package, so the engine never imports training.
pyproject.toml declares each in the `dimo.commands` entry-point group, where `dimo` finds them.
Each module has what an engine command module has (`add_arguments(parser)`, `run(args) -> int`)
and `HELP`, its one line in `dimo --help`; it imports only argparse at the top, so listing stays fast.
"""
