"""Procedural motion library: parametric, randomised SMPL-H pose sequences in the character frame."""

from dimo_engine.body.motion_sequence import MotionSequence

__all__ = ["MotionSequence"]
