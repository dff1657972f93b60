"""The "DiMo" tab of the 3D viewport sidebar: engine, character and reference, driving motion,
target cameras and frame range, settings, progress, and the take list."""

import bpy

from .. import generate_job


class DiMoSidebar:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "DiMo"


class DIMO_UL_takes(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0, flt_flag=0):
        row = layout.row(align=True)
        row.label(text=item.name, icon="SEQUENCE")
        row.label(text=f"{item.num_frames} fr")
        row.operator("dimo.switch_take", text="", icon="HIDE_OFF").index = index


class DIMO_PT_main(DiMoSidebar, bpy.types.Panel):
    bl_idname = "DIMO_PT_main"
    bl_label = "DiMo"

    def draw(self, context):
        layout = self.layout
        state = context.window_manager.dimo_job
        row = layout.row(align=True)
        row.operator("dimo.check_engine", icon="CHECKMARK")
        if state.engine_status:
            layout.label(text=state.engine_status, icon="INFO")


class DIMO_PT_character(DiMoSidebar, bpy.types.Panel):
    bl_idname = "DIMO_PT_character"
    bl_label = "Character and Reference"
    bl_parent_id = "DIMO_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.dimo
        layout.prop(settings, "anchor")
        layout.prop(settings, "reference_image")
        layout.prop(settings, "reference_camera")
        layout.operator("dimo.render_reference", icon="RENDER_STILL")


class DIMO_PT_driving(DiMoSidebar, bpy.types.Panel):
    bl_idname = "DIMO_PT_driving"
    bl_label = "Driving Motion"
    bl_parent_id = "DIMO_PT_main"

    def draw(self, context):
        layout = self.layout
        layout.prop(context.scene.dimo, "driving_video")
        layout.operator("dimo.render_driving", icon="RENDER_ANIMATION")


class DIMO_PT_cameras(DiMoSidebar, bpy.types.Panel):
    bl_idname = "DIMO_PT_cameras"
    bl_label = "Target Cameras"
    bl_parent_id = "DIMO_PT_main"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.dimo
        layout.prop(settings, "target_cameras", text="")
        layout.prop(settings, "use_scene_range")
        row = layout.row(align=True)
        row.enabled = not settings.use_scene_range
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
        box = layout.box()
        box.prop(settings, "camera_phrase")
        box.operator("dimo.camera_from_phrase", icon="OUTLINER_OB_CAMERA")


class DIMO_PT_settings(DiMoSidebar, bpy.types.Panel):
    bl_idname = "DIMO_PT_settings"
    bl_label = "Settings"
    bl_parent_id = "DIMO_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        settings = context.scene.dimo
        layout.prop(settings, "num_inference_steps")
        layout.prop(settings, "motion_guidance_scale")
        layout.prop(settings, "seed")
        row = layout.row(align=True)
        row.prop(settings, "character_height")
        row.operator("dimo.measure_character_height", text="", icon="EYEDROPPER")
        layout.prop(settings, "resolution")
        layout.prop(settings, "use_image_plane")
        layout.prop(settings, "texture_object")


class DIMO_PT_generate(DiMoSidebar, bpy.types.Panel):
    bl_idname = "DIMO_PT_generate"
    bl_label = "Generate"
    bl_parent_id = "DIMO_PT_main"

    def draw(self, context):
        layout = self.layout
        state = context.window_manager.dimo_job
        job = generate_job.current_job()
        running = job is not None and not job.finished
        if running:
            layout.progress(factor=state.progress, type="BAR", text=state.message or state.stage)
            layout.operator("dimo.cancel", icon="CANCEL")
        else:
            layout.operator("dimo.generate", icon="PLAY")
            if state.message:
                layout.label(text=state.message)
        if state.error:
            layout.label(text=state.error, icon="ERROR")


class DIMO_PT_takes(DiMoSidebar, bpy.types.Panel):
    bl_idname = "DIMO_PT_takes"
    bl_label = "Takes"
    bl_parent_id = "DIMO_PT_main"

    def draw(self, context):
        settings = context.scene.dimo
        self.layout.template_list("DIMO_UL_takes", "", settings, "takes", settings, "active_take_index", rows=3)


classes = (
    DIMO_UL_takes,
    DIMO_PT_main,
    DIMO_PT_character,
    DIMO_PT_driving,
    DIMO_PT_cameras,
    DIMO_PT_settings,
    DIMO_PT_generate,
    DIMO_PT_takes,
)
