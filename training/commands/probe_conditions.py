"""`dimo probe-conditions`: which conditions a trained DiT reads (training/probe.py) — its flow loss on training
pairs as trained, with another clip's reference, with the null motion tokens and (baselines) without control maps.

    dimo probe-conditions --config default-model --model dimo_engine/weights/default
    dimo probe-conditions --config baseline-2d-pose --model runs/baseline-2d-pose/pipeline
"""

from __future__ import annotations

import argparse

HELP = "which conditions a trained model reads: its loss with the reference, motion or control taken away"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from training.train import add_arguments as add_training_arguments

    add_training_arguments(parser)  # the config names the dataset, window size and the model's control kind
    parser.add_argument("--model", required=True, help="the trained DiMo pipeline folder to probe")
    parser.add_argument("--pairs", type=int, default=16, help="training pairs to average over")
    parser.add_argument("--pair-seed", type=int, default=123, help="draws the pairs and the noise")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from tqdm import tqdm

    if _class_name(args.model) == "DiMoCharacterPipeline":  # the default model: person-pixel loss, motion dropped
        from dimo_engine.pipelines import load_pipeline
        from training.character_data import build_character_cache
        from training.evaluate_character import probe_motion

        cache = build_character_cache(getattr(args, "override_dataset", None) or "data/clips", "train")
        print(json.dumps(probe_motion(load_pipeline(Path(args.model), device="cpu"), cache, args.pairs,
                                      args.pair_seed), indent=1))
        return 0

    from training.probe import probe_conditions
    from training.train import build_pipeline, config_from_args

    config = config_from_args(argparse.Namespace(**{**vars(args), "set": [*args.set, f"pretrained={args.model}"]}))
    pipe = build_pipeline(config)
    with tqdm(total=args.pairs, desc="probing", unit="pair") as bar:
        result = probe_conditions(config, pipe, num_pairs=args.pairs, seed=args.pair_seed,
                                  progress=lambda done, total: bar.update(done - bar.n))
    print(result.table())
    return 0


def _class_name(model) -> str | None:
    import json
    from pathlib import Path

    try:
        return json.loads((Path(model) / "model_index.json").read_text()).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None
