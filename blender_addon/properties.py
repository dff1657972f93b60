"""Property groups of the DiMo add-on: shot settings on the scene (`scene.dimo`) and the live job
state on the window manager (`window_manager.dimo_job`, not saved with the file)."""

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .core.api_schema import SETTINGS

# Paths are stored "//"-relative so a shot folder can move with its blend file.
BLEND_RELATIVE = {"PATH_SUPPORTS_BLEND_RELATIVE"} if bpy.app.version >= (4, 5, 0) else set()

RESOLUTION_PRESETS = (
    ("128", "128 px (fast)", "Long side 128 pixels: the size the default engine model was trained at"),
    ("256", "256 px", "Long side 256 pixels"),
    ("512", "512 px", "Long side 512 pixels (needs a bigger model)"),
)


def _is_anchor(_self, obj):
    return obj.type in {"EMPTY", "ARMATURE"}


def _is_camera(_self, obj):
    return obj.type == "CAMERA"


class DIMO_PG_take(bpy.types.PropertyGroup):
    """One generated take: a folder of frames loaded as an image sequence."""

    # `name` (built in) is "<shot>/<take>"
    shot: StringProperty(name="Shot")
    take: StringProperty(name="Take")
    directory: StringProperty(name="Folder", subtype="DIR_PATH", options=BLEND_RELATIVE)
    camera: StringProperty(name="Camera", description="Name of the camera object the take was generated for")
    image: StringProperty(name="Image", description="Name of the image-sequence datablock of this take")
    frame_start: IntProperty(name="Start")
    num_frames: IntProperty(name="Frames")


# --- render-clip settings (engineer "renderer") go here --------------------------------------
# Define the PropertyGroup here, list it in `classes` before DIMO_PG_scene, and point to it from
# DIMO_PG_scene with `render_clips: PointerProperty(type=...)`.


class DIMO_PG_render_clips(bpy.types.PropertyGroup):
    """Settings of "Render Training Clips" (the scene's rig seen from generated cameras) and its progress."""

    output_dir: StringProperty(name="Output", subtype="DIR_PATH", default="//dimo_clips/",
                               description="Clip dataset folder; new clips are added after the existing ones")
    clips: IntProperty(name="Clips", default=1, min=1, max=1000, description="Clips to render, each with new random cameras")
    views: IntProperty(name="Views", default=4, min=1, max=64, description="Views per clip: driving view, static ring, moving cameras")
    resolution: IntProperty(name="Resolution", default=128, min=16, max=4096, subtype="PIXEL")
    engine: EnumProperty(name="Engine", items=(("WORKBENCH", "Workbench", "Fast, flat studio lighting"),
                                                ("CYCLES", "Cycles", "Path traced with the scene's lights")), default="WORKBENCH")
    samples: IntProperty(name="Samples", default=8, min=1, max=4096)
    denoise: BoolProperty(name="Denoise", default=False)
    split: EnumProperty(name="Split", items=(("TRAIN", "Train", ""), ("TEST", "Test", "")), default="TRAIN")
    seed: IntProperty(name="Seed", default=0, min=0)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})


class DIMO_PG_scene(bpy.types.PropertyGroup):
    """Everything one DiMo shot needs; shown in the 3D viewport sidebar, tab DiMo."""

    anchor: PointerProperty(
        name="Character Anchor",
        type=bpy.types.Object,
        poll=_is_anchor,
        description="Empty or armature whose world matrix at the first frame defines the character frame",
    )
    reference_image: StringProperty(
        name="Reference Image", subtype="FILE_PATH",
        options=BLEND_RELATIVE, description="Picture of the character to animate"
    )
    reference_camera: StringProperty(
        name="Reference Camera",
        subtype="FILE_PATH",
        options=BLEND_RELATIVE,
        description="Camera path file of the view the reference image was taken from (empty: front, eye level); "
                    "with it, the character is drawn as tall as the reference shows it",
    )
    driving_video: StringProperty(
        name="Driving Video", subtype="FILE_PATH",
        options=BLEND_RELATIVE, description="Video (or zip of images) of the motion to re-enact"
    )
    target_cameras: EnumProperty(
        name="Target Cameras",
        items=(
            ("SCENE", "Scene Camera", "The scene's active camera"),
            ("SELECTED", "Selected Cameras", "Every selected camera object"),
            ("MARKERS", "Marker Cameras", "All cameras bound to timeline markers in the frame range"),
        ),
        default="SCENE",
    )
    use_scene_range: BoolProperty(name="Scene Frame Range", default=True)
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=17, min=0)
    num_inference_steps: IntProperty(name="Steps", default=20, min=SETTINGS["num_inference_steps"].low,
                                     max=SETTINGS["num_inference_steps"].high)
    # The panel offers up to 20 of the engine's 30.
    motion_guidance_scale: FloatProperty(name="Motion Guidance", default=2.0, min=SETTINGS["motion_guidance_scale"].low,
                                         max=20.0)
    seed: IntProperty(name="Seed", default=0, min=SETTINGS["seed"].low)
    character_height: FloatProperty(
        name="Character Height", default=0.0, min=0.0, max=SETTINGS["character_height"].high, unit="LENGTH",
        description="How tall your character stands, crown to floor; the motion is scaled to it. 0: as tall as the "
                    "reference shows it through its Reference Camera, or without one as the driving video shows the "
                    "person (a video alone cannot measure it)",
    )
    resolution: EnumProperty(name="Resolution", items=RESOLUTION_PRESETS, default="128")
    use_image_plane: BoolProperty(
        name="Image Plane", description="Also show the take on a plane in front of the camera", default=False
    )
    texture_object: PointerProperty(
        name="Texture Object",
        type=bpy.types.Object,
        description="Also put the take as a material texture on this object (optional)",
    )
    camera_phrase: StringProperty(name="Phrase", default="orbit left 90 degrees")
    takes: CollectionProperty(type=DIMO_PG_take)
    render_clips: PointerProperty(type=DIMO_PG_render_clips)
    active_take_index: IntProperty(name="Take", default=-1)


class DIMO_PG_job(bpy.types.PropertyGroup):
    """What the panels show of the Generate job and of the engine connection (never saved); whether a job
    runs is asked of the job itself (`long_work.latest_job`)."""

    stage: StringProperty(default="")
    progress: FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty(default="")
    error: StringProperty(default="")
    engine_status: StringProperty(default="")


classes = (DIMO_PG_take, DIMO_PG_render_clips, DIMO_PG_scene, DIMO_PG_job)


def attach():
    bpy.types.Scene.dimo = PointerProperty(type=DIMO_PG_scene)
    bpy.types.WindowManager.dimo_job = PointerProperty(type=DIMO_PG_job)


def detach():
    for owner, name in ((bpy.types.WindowManager, "dimo_job"), (bpy.types.Scene, "dimo")):
        if hasattr(owner, name):
            delattr(owner, name)
