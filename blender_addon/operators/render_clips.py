"""The "Render Training Clips" operator: the scene's own armature animation seen from a generated
camera rig, written as clip dataset folders; one frame per timer tick, with progress and Esc to cancel."""

import bpy

from .. import long_work
from ..clip_renderer.scene_clips import iter_render_scene_clips
from .stepped import SteppedOperator


class DIMO_OT_render_training_clips(SteppedOperator, bpy.types.Operator):
    """Render the active armature's animation from a generated camera rig into training clips (Esc cancels)"""

    bl_idname = "dimo.render_training_clips"
    bl_label = "Render Training Clips"

    cancel_message = "Training clip render cancelled; finished clips are kept."

    @classmethod
    def poll(cls, context):
        return context.active_object is not None and context.active_object.type == "ARMATURE"

    def steps(self, context):
        settings = context.scene.dimo.render_clips
        return iter_render_scene_clips(
            context.scene, context.active_object, settings.output_dir, num_clips=settings.clips,
            num_views=settings.views, resolution=settings.resolution, engine=settings.engine.lower(),
            samples=settings.samples, denoise=settings.denoise, seed=settings.seed, split=settings.split.lower(),
            anchor_obj=context.scene.dimo.anchor,
        )

    def started(self, context):
        context.scene.dimo.render_clips.progress = 0.0

    def progress(self, context, done, total):
        context.scene.dimo.render_clips.progress = done / total

    def finished(self, context):
        return f"Training clips written to {bpy.path.abspath(context.scene.dimo.render_clips.output_dir)}"


class DIMO_OT_cancel_training_clips(bpy.types.Operator):
    """Stop the running training clip render after the current frame"""

    bl_idname = "dimo.cancel_training_clips"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return long_work.is_running(DIMO_OT_render_training_clips.bl_idname)

    def execute(self, context):
        long_work.latest_job(DIMO_OT_render_training_clips.bl_idname).request_cancel()
        return {"FINISHED"}


classes = (DIMO_OT_render_training_clips, DIMO_OT_cancel_training_clips)
