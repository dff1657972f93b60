"""The "Render Training Clips" operator: the scene's own armature animation seen from a generated
camera rig, written as clip dataset folders; one frame per timer tick, with progress and Esc to cancel."""

import bpy

from ..clip_renderer.scene_clips import iter_render_scene_clips


def _steps(context):
    settings = context.scene.dimo.render_clips
    return iter_render_scene_clips(
        context.scene, context.active_object, settings.output_dir, num_clips=settings.clips, num_views=settings.views,
        resolution=settings.resolution, engine=settings.engine.lower(), samples=settings.samples,
        denoise=settings.denoise, seed=settings.seed, split=settings.split.lower(), anchor_obj=context.scene.dimo.anchor,
    )


class DIMO_OT_render_training_clips(bpy.types.Operator):
    """Render the active armature's animation from a generated camera rig into training clips (Esc cancels)"""

    bl_idname = "dimo.render_training_clips"
    bl_label = "Render Training Clips"

    _steps = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and context.active_object.type == "ARMATURE"

    def execute(self, context):
        # Without a window (scripts, background mode): render everything at once.
        try:
            for _ in _steps(context):
                pass
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Training clips written to {bpy.path.abspath(context.scene.dimo.render_clips.output_dir)}")
        return {"FINISHED"}

    def invoke(self, context, event):
        try:
            self._steps = _steps(context)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        context.scene.dimo.render_clips.running = True
        context.scene.dimo.render_clips.progress = 0.0
        context.window_manager.progress_begin(0.0, 1.0)
        self._timer = context.window_manager.event_timer_add(0.01, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        settings = context.scene.dimo.render_clips
        if event.type == "ESC" or not settings.running:
            self._steps.close()  # abandons the clip in progress and restores the scene
            self._end(context)
            self.report({"WARNING"}, "Training clip render cancelled; finished clips are kept.")
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            done, total = next(self._steps)
        except StopIteration:
            self._end(context)
            self.report({"INFO"}, f"Training clips written to {bpy.path.abspath(settings.output_dir)}")
            return {"FINISHED"}
        except (ValueError, RuntimeError) as error:
            self._end(context)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        settings.progress = done / total
        context.window_manager.progress_update(settings.progress)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return {"RUNNING_MODAL"}

    def _end(self, context):
        context.scene.dimo.render_clips.running = False
        context.window_manager.progress_end()
        context.window_manager.event_timer_remove(self._timer)


class DIMO_OT_cancel_training_clips(bpy.types.Operator):
    """Stop the running training clip render after the current frame"""

    bl_idname = "dimo.cancel_training_clips"
    bl_label = "Cancel"

    def execute(self, context):
        context.scene.dimo.render_clips.running = False
        return {"FINISHED"}


classes = (DIMO_OT_render_training_clips, DIMO_OT_cancel_training_clips)
