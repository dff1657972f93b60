"""DiMo Previs, the Blender extension: send scene cameras and a driving video to the DiMo engine
and bring the generated frames back as image-sequence textures; also renders training clips.

This file only registers. Runs inside Blender's Python: bpy, numpy and the standard library only.
bpy and the operators are imported inside `register()`, as Blender's bundled add-ons do, so that
`blender_addon.core` (the bpy-free code the engine shares) imports without loading Blender.
"""


def _classes() -> tuple:
    from . import operators, preferences, properties, ui

    return (*properties.classes, *preferences.classes, *operators.classes, *ui.classes)


# A second register() or unregister() (a script enabling the add-on twice, a reload) is a no-op, not an error.
def register():
    import bpy

    from . import properties

    classes = _classes()
    if all(cls.is_registered for cls in classes):
        return
    if any(cls.is_registered for cls in classes):  # half-registered by an earlier failure: start clean
        unregister()
    register_classes, _ = bpy.utils.register_classes_factory(classes)
    register_classes()
    properties.attach()


def unregister():
    import bpy

    from . import engine_process, long_work, properties

    classes = _classes()
    if not any(cls.is_registered for cls in classes):
        return
    long_work.cancel_all()
    engine_process.stop_local_engine()
    properties.detach()
    for cls in reversed(classes):
        if cls.is_registered:
            bpy.utils.unregister_class(cls)
