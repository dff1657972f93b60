"""Training clips from the user's own scene: the active scene's armature animation, seen from a
generated camera rig around the selected character, written in the same clip dataset format.

`iter_render_scene_clips` renders one frame per step, so the add-on operator can run it from a
timer without freezing Blender; SMPL-H parameters are written only for the project's SMPL-H rig
(built by `character.build_character`), any other rig writes joint positions by bone name.
"""

from __future__ import annotations

import os
import re

import bpy
import numpy as np
from mathutils import Matrix, Quaternion

from ..camera_export import character_frame_to_world, import_camera_path
from ..core.annotations import person_box, view_annotations
from ..core.atomic_io import write_json_atomic
from ..core.camera_path import camera_path_to_dict
from ..core.clip_format import CLIP_FORMAT, DATASET_FORMAT, FORMAT_VERSION, ClipWriter, clip_name
from ..core.clip_views import clip_views, subject_box
from .character import SMPLH_RIG_PROPERTY
from .render import ViewRenderer, configure_render, render_view

_SET_TYPES = {"MESH", "CURVE", "SURFACE", "META", "FONT", "VOLUME", "GREASEPENCIL", "GPENCIL", "CURVES", "POINTCLOUD"}
_SIDE = {0: re.compile(r"(^|[^a-z])(l|left)([^a-z]|$)|\.l$|_l$|left", re.I), 1: re.compile(r"(^|[^a-z])(r|right)([^a-z]|$)|\.r$|_r$|right", re.I)}
_HAND_WORDS = re.compile(r"hand|wrist|finger|thumb|index|middle|ring|pinky", re.I)


def person_objects(armature_obj) -> list:
    """Objects the armature deforms (armature modifier) or carries (children), the person's mask."""
    found = []
    for obj in bpy.data.objects:
        deformed = any(m.type == "ARMATURE" and m.object == armature_obj for m in getattr(obj, "modifiers", []))
        if (deformed or obj.parent == armature_obj) and obj.type in _SET_TYPES:
            found.append(obj)
    return found


def hand_joint_indices(joint_names: list[str]) -> tuple[list[int], list[int]]:
    """Left and right hand joints of any rig by bone name (wrist/hand/finger words and a side)."""
    hands = ([], [])
    for index, name in enumerate(joint_names):
        if _HAND_WORDS.search(name):
            for side in (0, 1):
                if _SIDE[side].search(name) and not _SIDE[1 - side].search(name):
                    hands[side].append(index)
    return hands


def _quaternion_to_axis_angle(quaternions: np.ndarray) -> np.ndarray:
    """(...,4) w,x,y,z -> (...,3) axis-angle."""
    q = quaternions * np.where(quaternions[..., :1] < 0, -1.0, 1.0)
    sin_half = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, q[..., :1])
    return q[..., 1:] * np.where(sin_half > 1e-9, angle / np.maximum(sin_half, 1e-12), 2.0)


def sample_rig_motion(scene, armature_obj, frames, character_to_world: np.ndarray) -> dict:
    """Per frame bone head positions in the character frame; SMPL-H parameters for the project's rig."""
    world_to_character = np.linalg.inv(character_to_world)
    smplh = bool(armature_obj.get(SMPLH_RIG_PROPERTY)) and len(armature_obj.pose.bones) == 52
    names = list(armature_obj["dimo_joint_names"]) if smplh else [bone.name for bone in armature_obj.pose.bones]
    bones = [armature_obj.pose.bones[name] for name in names]
    joints, quaternions, root_location = [], [], []
    for frame in frames:
        scene.frame_set(int(frame))
        to_character = world_to_character @ np.array(armature_obj.matrix_world)
        heads = np.array([bone.head for bone in bones])  # armature space
        joints.append(heads @ to_character[:3, :3].T + to_character[:3, 3])
        if smplh:
            quaternions.append([list(bone.rotation_quaternion) for bone in bones])
            root_location.append((to_character, np.array(bones[0].location)))
    motion = {"joints": np.asarray(joints, dtype=np.float32), "joint_names": np.array(names)}
    if smplh:
        pose = _quaternion_to_axis_angle(np.asarray(quaternions))  # (F,52,3) in armature axes
        rest_root = np.array(armature_obj.data.bones[names[0]].head_local)
        global_orient, transl = [], []
        for (to_character, location), root_quaternion in zip(root_location, np.asarray(quaternions)[:, 0]):
            rotation = to_character[:3, :3] / np.cbrt(np.linalg.det(to_character[:3, :3]))
            orient = (Matrix(rotation.tolist()) @ Quaternion(root_quaternion.tolist()).to_matrix()).to_quaternion()
            global_orient.append(_quaternion_to_axis_angle(np.array(orient)))
            # smplx rotates about the rest root joint J0 then adds transl: J0 + transl = world root.
            transl.append(rotation @ (rest_root + location) + to_character[:3, 3] - rest_root)
        motion = {
            "global_orient": np.asarray(global_orient, np.float32), "body_pose": pose[:, 1:22].astype(np.float32),
            "left_hand_pose": pose[:, 22:37].astype(np.float32), "right_hand_pose": pose[:, 37:52].astype(np.float32),
            "betas": np.asarray(armature_obj.get("dimo_betas", [0.0] * 10), np.float32), "transl": np.asarray(transl, np.float32),
            "joints": motion["joints"],
        }
    return motion


def person_bounds(scene, people, frames, world_to_character: np.ndarray) -> np.ndarray:
    """(F*8*N, 3) corners of the person objects' deformed bounding boxes over the frames, character frame."""
    corners = []
    for frame in frames:
        scene.frame_set(int(frame))
        depsgraph = bpy.context.evaluated_depsgraph_get()
        for obj in people:
            evaluated = obj.evaluated_get(depsgraph)
            box = np.array([list(corner) + [1.0] for corner in evaluated.bound_box])
            corners.append((box @ (world_to_character @ np.array(evaluated.matrix_world)).T)[:, :3])
    return np.concatenate(corners)


def _next_free_index(root: str, split: str) -> int:
    folder = os.path.join(root, split)
    taken = [int(name[5:]) for name in os.listdir(folder) if re.fullmatch(r"clip_\d{6}", name)] if os.path.isdir(folder) else []
    return max(taken, default=-1) + 1


def iter_render_scene_clips(scene, armature_obj, out_dir: str, num_clips: int = 1, num_views: int = 4,
                            resolution: int = 128, engine: str = "workbench", samples: int = 8, denoise: bool = False,
                            seed: int = 0, split: str = "train", frame_start: int | None = None,
                            frame_end: int | None = None, anchor_obj=None):
    """Render `num_clips` clips of the scene's animation (new random cameras each); yields
    (frames_done, frames_total) after every rendered frame. Closing the generator abandons the clip
    in progress and restores the scene."""
    if armature_obj is None or armature_obj.type != "ARMATURE":
        raise ValueError("Select the character's armature (the rig whose animation to render) and try again.")
    people = person_objects(armature_obj)
    if not people:
        raise ValueError(f"No mesh is deformed by '{armature_obj.name}'; give the armature a skinned mesh (Armature modifier).")
    frame_start = scene.frame_start if frame_start is None else frame_start
    frame_end = scene.frame_end if frame_end is None else frame_end
    if frame_end < frame_start:
        raise ValueError(f"The frame range {frame_start}-{frame_end} is empty; set an end frame after the start frame.")
    frames = list(range(frame_start, frame_end + 1))
    fps = scene.render.fps / scene.render.fps_base
    out_dir = bpy.path.abspath(out_dir)
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    dataset_path = os.path.join(out_dir, "dataset.json")
    if not os.path.isfile(dataset_path):
        write_json_atomic(dataset_path, {"format": DATASET_FORMAT, "version": FORMAT_VERSION, "source": "blender-scene",
                                         "resolution": resolution, "engine": engine, "samples": samples})

    saved = _save_scene_state(scene)
    anchor_obj = anchor_obj or armature_obj
    scene.frame_set(frame_start)
    character_to_world = character_frame_to_world(anchor_obj)
    set_objects = [obj for obj in scene.objects if obj.type in _SET_TYPES and not obj.hide_render and obj not in people]
    created_cameras, writer = [], None
    total = num_clips * num_views * len(frames)
    done = 0
    try:
        motion = sample_rig_motion(scene, armature_obj, frames, character_to_world)
        subject = np.concatenate([motion["joints"].reshape(-1, 3), person_bounds(scene, people, frames, np.linalg.inv(character_to_world))])
        hands = hand_joint_indices([str(n) for n in motion.get("joint_names", [])]) if "joint_names" in motion else (
            [20] + list(range(22, 37)), [21] + list(range(37, 52)))
        configure_render(scene, engine, samples, resolution, resolution, denoise)
        renderer = ViewRenderer(scene, people, set_objects)
        for clip_number in range(num_clips):
            index = _next_free_index(out_dir, split)
            views = clip_views(num_views, subject_box(subject, margin=0.05), len(frames), fps, resolution,
                               np.random.default_rng(seed + clip_number))
            writer = ClipWriter(out_dir, split, index)
            for view in views:
                camera_path = view.camera_path
                camera_path.frames = np.asarray(frames)
                camera_obj = import_camera_path(camera_path, scene, anchor_obj=anchor_obj, name=f"DiMo clip {view.name}", apply_render_settings=False)
                created_cameras.append(camera_obj)
                boxes = []
                for frame_index, rgba in render_view(renderer, camera_obj, camera_path, frames):
                    writer.write_frame(view.name, frame_index, rgba)
                    boxes.append(person_box(rgba[..., 3]))
                    done += 1
                    yield done, total
                writer.write_camera(view.name, camera_path_to_dict(camera_path))
                writer.write_annotations(view.name, **view_annotations(motion["joints"].astype(np.float64), camera_path, boxes, hands))
            writer.write_motion(**motion)
            writer.commit({
                "format": CLIP_FORMAT, "version": FORMAT_VERSION, "clip_id": f"{split}/{clip_name(index)}", "split": split,
                "num_frames": len(frames), "fps": float(fps), "width": resolution, "height": resolution,
                "motion": {"family": armature_obj.animation_data.action.name if armature_obj.animation_data and armature_obj.animation_data.action else "scene",
                           "seed": int(seed + clip_number), "source": "blender-scene"},
                "appearance_seed": 0, "render": {"engine": engine, "samples": int(samples), "denoise": bool(denoise)},
                "body_model": "dimo-smplh-procedural-v1" if "global_orient" in motion else f"rig:{armature_obj.name}",
                "driving_view": "driving", "views": [view.manifest_entry() for view in views],
                "blend_file": os.path.basename(bpy.data.filepath), "frame_start": frame_start, "frame_end": frame_end,
            })
            writer = None
            for camera_obj in created_cameras:
                bpy.data.objects.remove(camera_obj, do_unlink=True)
            created_cameras = []
    finally:
        if writer is not None:
            writer.abandon()
        for camera_obj in created_cameras:
            bpy.data.objects.remove(camera_obj, do_unlink=True)
        _restore_scene_state(scene, saved)


_RENDER_FIELDS = ("engine", "resolution_x", "resolution_y", "resolution_percentage", "film_transparent", "filepath",
                  "pixel_aspect_x", "pixel_aspect_y")


def _save_scene_state(scene) -> dict:
    return {
        "render": {name: getattr(scene.render, name) for name in _RENDER_FIELDS},
        "cycles": {name: getattr(scene.cycles, name) for name in ("samples", "use_denoising", "use_adaptive_sampling", "seed")},
        "shading_colour": scene.display.shading.color_type, "render_aa": scene.display.render_aa,
        "view_transform": scene.view_settings.view_transform, "look": scene.view_settings.look,
        "camera": scene.camera, "frame": scene.frame_current,
        "hide_render": {obj.name: obj.hide_render for obj in scene.objects},
    }


def _restore_scene_state(scene, saved: dict) -> None:
    for name, value in saved["render"].items():
        setattr(scene.render, name, value)
    for name, value in saved["cycles"].items():
        setattr(scene.cycles, name, value)
    scene.display.shading.color_type, scene.display.render_aa = saved["shading_colour"], saved["render_aa"]
    scene.view_settings.view_transform, scene.view_settings.look = saved["view_transform"], saved["look"]
    scene.camera = saved["camera"]
    for obj in scene.objects:
        if obj.name in saved["hide_render"]:
            obj.hide_render = saved["hide_render"][obj.name]
    scene.frame_set(saved["frame"])
