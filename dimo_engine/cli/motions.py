"""`dimo motions`: list the procedural motion families and the train/test split, or write one
motion (procedural or retargeted from a BVH file) as a `motion.npz`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--family", help="write a procedural motion of this family (see the list without arguments)")
    source.add_argument("--bvh", help="write the motion of this BVH file, retargeted to SMPL-H")
    parser.add_argument("--seed", type=int, default=0, help="motion seed of a procedural family")
    parser.add_argument("--frames", type=int, default=48, help="frames of a procedural motion")
    parser.add_argument("--fps", type=float, default=None, help="frame rate (procedural default 24; a BVH keeps its own unless given)")
    parser.add_argument("--out", help="motion .npz to write (SMPL-H parameters and joints, as in docs/formats.md)")


def run(args: argparse.Namespace) -> int:
    from dimo_engine.errors import InputError

    if args.family is None and args.bvh is None:
        from dimo_engine.body.motions import MOTION_FAMILIES
        from dimo_engine.body.train_test_split import HELD_OUT_FAMILIES, SEED_RANGES

        for family in MOTION_FAMILIES:
            print(f"{family:16s} {'test only (held out)' if family in HELD_OUT_FAMILIES else 'train and test'}")
        print("seeds: " + ", ".join(f"{split} [{low}, {high})" for split, (low, high) in SEED_RANGES.items()))
        return 0
    if not args.out or not args.out.endswith(".npz"):
        raise InputError("--out: give the motion file to write, ending in .npz")
    from dimo_engine.body import load_body_model

    if args.family is not None:
        from dimo_engine.body.motions import generate_motion

        motion = generate_motion(args.family, args.seed, args.frames, args.fps or 24.0)
    else:
        from dimo_engine.body.bvh import load_bvh

        motion = load_bvh(args.bvh, fps=args.fps)
    joints, _ = load_body_model().forward(motion)
    path = motion.save_npz(args.out, joints=joints)
    print(f"wrote {motion.num_frames} frames of '{motion.family}' at {motion.fps:g} fps to {path}")
    return 0
