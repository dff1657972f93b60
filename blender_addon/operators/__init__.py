"""Operators of the DiMo add-on. Each module exports `classes`; they are thin and call plain functions."""

from . import camera_phrase, engine, generate, render, render_clips, takes

classes = (
    *engine.classes,
    *generate.classes,
    *render.classes,
    *takes.classes,
    *camera_phrase.classes,
    *render_clips.classes,
)
