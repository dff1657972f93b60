"""Panels of the DiMo add-on (3D viewport sidebar, tab "DiMo"). Each module exports `classes`."""

from . import panels, training_clips

classes = (*panels.classes, *training_clips.classes)
