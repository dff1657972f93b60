"""Camera from phrase: create and key a camera from a text phrase ("orbit left 90 degrees"), in the
character frame of the anchor, for quick shot blocking."""

import bpy
import numpy as np

from ..generate_request import frame_range


def camera_from_phrase(scene, phrase: str, anchor_obj):
    """Create the keyed camera for `phrase` over the DiMo frame range; returns the camera object."""
    from ..camera_export import import_camera_path, render_size, scene_fps
    from ..core.camera_phrases import camera_path_from_phrase

    if not phrase.strip():
        raise ValueError("The camera phrase is empty; type one, for example 'orbit left 90 degrees'.")
    start, end = frame_range(scene)
    if end < start:
        raise ValueError(f"The frame range {start}-{end} is empty; set an end frame after the start frame.")
    width, height = render_size(scene)
    # Keyed on the scene's frames, not 0..F-1.
    camera_path = camera_path_from_phrase(phrase, end - start + 1, scene_fps(scene), width, height,
                                          frames=np.arange(start, end + 1))
    return import_camera_path(camera_path, scene, anchor_obj=anchor_obj, name=f"DiMo {phrase.strip()}"[:63],
                              apply_render_settings=False)


class DIMO_OT_camera_from_phrase(bpy.types.Operator):
    """Create a camera keyed from the phrase, in the character frame"""

    bl_idname = "dimo.camera_from_phrase"
    bl_label = "Camera from Phrase"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        scene = context.scene
        try:
            camera_obj = camera_from_phrase(scene, scene.dimo.camera_phrase, scene.dimo.anchor)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        scene.camera = camera_obj
        self.report({"INFO"}, f"Created {camera_obj.name}")
        return {"FINISHED"}


classes = (DIMO_OT_camera_from_phrase,)
