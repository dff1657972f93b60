"""DiMo Previs, the Blender extension: send scene cameras and a driving video to the DiMo engine
and bring the generated frames back as image-sequence textures; also renders training clips.

This file only registers. Runs inside Blender's Python: bpy, numpy and the standard library only.
"""

import bpy

from . import engine_process, jobs, operators, preferences, properties, ui

classes = (
    *properties.classes,
    *preferences.classes,
    *operators.classes,
    *ui.classes,
)

_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register():
    _register_classes()
    properties.attach()


def unregister():
    jobs.cancel_all()
    engine_process.stop_local_engine()
    properties.detach()
    _unregister_classes()
