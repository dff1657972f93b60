"""Switch the shown take of a camera."""

import bpy
from bpy.props import IntProperty

from .. import takes


class DIMO_OT_switch_take(bpy.types.Operator):
    """Show this take on its camera's background (and image plane or material)"""

    bl_idname = "dimo.switch_take"
    bl_label = "Switch Take"

    index: IntProperty(name="Take", default=-1, description="Take list index (-1: the active one)")

    def execute(self, context):
        scene = context.scene
        index = self.index if self.index >= 0 else scene.dimo.active_take_index
        try:
            item = takes.switch_take(scene, index)
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.report({"INFO"}, f"Showing {item.name} on {item.camera}")
        return {"FINISHED"}


classes = (DIMO_OT_switch_take,)
