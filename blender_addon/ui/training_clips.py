"""The "Training Clips" panel: settings and progress of rendering the scene's rig into training clips."""

import bpy

from .. import long_work
from .panels import DiMoSidebar


class DIMO_PT_training_clips(DiMoSidebar, bpy.types.Panel):
    bl_label = "Training Clips"
    bl_parent_id = "DIMO_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        settings = context.scene.dimo.render_clips
        layout.prop(settings, "output_dir")
        column = layout.column(align=True)
        column.prop(settings, "clips")
        column.prop(settings, "views")
        column.prop(settings, "resolution")
        row = layout.row(align=True)
        row.prop(settings, "engine", expand=True)
        layout.prop(settings, "samples")
        if settings.engine == "CYCLES":
            layout.prop(settings, "denoise")
        row = layout.row(align=True)
        row.prop(settings, "split", expand=True)
        layout.prop(settings, "seed")
        if long_work.is_running("dimo.render_training_clips"):
            layout.progress(factor=settings.progress, text=f"Rendering {settings.progress:.0%}")
            layout.operator("dimo.cancel_training_clips", icon="CANCEL")
        else:
            layout.operator("dimo.render_training_clips", icon="RENDER_ANIMATION")


classes = (DIMO_PT_training_clips,)
