"""Render a driving clip from the scene's animated character, and a reference image from a camera."""

from pathlib import Path

import bpy

from .. import driving_render, reference_render, takes
from ..generation import frame_range

DRIVING_SIZE_PX = 128


class DIMO_OT_render_driving(bpy.types.Operator):
    """Quick Workbench render of the character's animation over the frame range, used as the driving video"""

    bl_idname = "dimo.render_driving"
    bl_label = "Render Driving Clip"

    _steps = None
    _timer = None

    def invoke(self, context, event):
        scene = context.scene
        try:
            start, end = frame_range(scene)
            self._output = driving_render.next_free_path(takes.dimo_root() / "driving", "driving", ".zip")
            self._steps = driving_render.iter_render_driving_clip(
                scene, scene.dimo.anchor, start, end, self._output, DRIVING_SIZE_PX
            )
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(0.01, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        # Without a window (scripts): render everything at once.
        scene = context.scene
        try:
            start, end = frame_range(scene)
            output = driving_render.render_driving_clip(scene, scene.dimo.anchor, start, end, size=DRIVING_SIZE_PX)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        scene.dimo.driving_video = bpy.path.relpath(str(output))
        self.report({"INFO"}, f"Driving clip written to {output}")
        return {"FINISHED"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._steps.close()  # runs the generator's clean-up; no zip is written
            self._end(context)
            self.report({"WARNING"}, "Driving render cancelled.")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            done, total = next(self._steps)
            context.window_manager.dimo_job.message = f"Rendering driving frame {done}/{total}"
            context.window_manager.dimo_job.progress = done / total
            return {"RUNNING_MODAL"}
        except StopIteration:
            pass
        except (ValueError, RuntimeError) as error:
            self._end(context)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._end(context)
        context.scene.dimo.driving_video = bpy.path.relpath(str(self._output))
        context.window_manager.dimo_job.message = f"Driving clip {Path(self._output).name} ready"
        self.report({"INFO"}, f"Driving clip written to {self._output}")
        return {"FINISHED"}

    def _end(self, context):
        context.window_manager.event_timer_remove(self._timer)


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


classes = (DIMO_OT_render_driving, DIMO_OT_render_reference)
