"""`dimo make-body`: write the procedural SMPL-H-compatible body model file."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="where to write the body model (.npz, loadable with smplx.SMPLH)")
    parser.add_argument("--seed", type=int, default=0, help="recorded in the file; the geometry is deterministic")


def run(args: argparse.Namespace) -> int:
    from dimo_engine.body.procedural_body import BODY_MODEL_NAME, make_body_model_file
    from dimo_engine.errors import InputError

    if not str(args.out).endswith(".npz"):
        raise InputError(f"--out {args.out}: the body model is written as .npz; give a path ending in .npz")
    path = make_body_model_file(args.out, seed=args.seed)
    print(f"wrote {BODY_MODEL_NAME} to {path}")
    return 0
