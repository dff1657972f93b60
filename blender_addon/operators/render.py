"""Render a driving clip from the scene's animated character, and a reference image from a camera."""

from pathlib import Path

import bpy

from .. import driving_render, reference_render, takes
from ..generate_request import frame_range
from .stepped import SteppedOperator

DRIVING_SIZE_PX = 128


class DIMO_OT_render_driving(SteppedOperator, bpy.types.Operator):
    """Quick Workbench render of the character's animation over the frame range, used as the driving video"""

    bl_idname = "dimo.render_driving"
    bl_label = "Render Driving Clip"

    cancel_message = "Driving render cancelled."
    _output = None

    def steps(self, context):
        scene = context.scene
        start, end = frame_range(scene)
        self._output = driving_render.next_free_path(takes.dimo_root() / "driving", "driving", ".zip")
        return driving_render.iter_render_driving_clip(scene, scene.dimo.anchor, start, end, self._output, DRIVING_SIZE_PX)

    def progress(self, context, done, total):
        context.window_manager.dimo_job.message = f"Rendering driving frame {done}/{total}"
        context.window_manager.dimo_job.progress = done / total

    def finished(self, context):
        context.scene.dimo.driving_video = bpy.path.relpath(str(self._output))
        context.window_manager.dimo_job.message = f"Driving clip {Path(self._output).name} ready"
        return f"Driving clip written to {self._output}"


class DIMO_OT_render_reference(bpy.types.Operator):
    """Render the selected character from the active camera with the current render settings and use it as the reference"""

    bl_idname = "dimo.render_reference"
    bl_label = "Render Reference from Camera"

    def execute(self, context):
        scene = context.scene
        try:
            image_path, camera_file = reference_render.render_reference(
                scene, scene.camera, context.selected_objects, scene.dimo.anchor
            )
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        scene.dimo.reference_image = bpy.path.relpath(str(image_path))
        scene.dimo.reference_camera = bpy.path.relpath(str(camera_file))
        self.report({"INFO"}, f"Reference rendered to {image_path}")
        return {"FINISHED"}


class DIMO_OT_measure_character_height(bpy.types.Operator):
    """Set the character height from the selected character's geometry as posed now (stand it up straight first)"""

    bl_idname = "dimo.measure_character_height"
    bl_label = "Measure Character Height"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        try:
            height = reference_render.character_height(context.selected_objects, context.evaluated_depsgraph_get())
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        context.scene.dimo.character_height = height
        self.report({"INFO"}, f"Character height {height:.2f}")
        return {"FINISHED"}


classes = (DIMO_OT_render_driving, DIMO_OT_render_reference, DIMO_OT_measure_character_height)
