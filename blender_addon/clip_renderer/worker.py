"""The headless render worker: `python -m blender_addon.clip_renderer.worker PLAN_DIR` renders
every clip of a plan written by `dimo_engine.clip_plan` into the clip dataset, one clip at a time,
skipping complete clips; prints `clip-done <index>` per clip for the parent's progress bar.

Runs with the `bpy` module in a fresh process, so each shard gets its own Blender.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import bpy
import numpy as np

from ..camera_export import import_camera_path
from ..core import appearance as looks
from ..core.annotations import SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND, person_box, view_annotations
from ..core.camera_path import camera_path_from_dict, camera_path_to_dict
from ..core.clip_format import CLIP_FORMAT, FORMAT_VERSION, ClipWriter, is_clip_complete
from .character import build_character, key_pose
from .render import ViewRenderer, configure_render, render_view
from .scene import build_background, build_lights, set_vertex_colours

def render_clip(plan_dir: str, plan: dict, clip: dict, body: dict) -> float:
    """Build the scene of one planned clip, render all its views and commit the clip folder;
    returns the seconds spent rendering and writing (scene building excluded)."""
    settings = plan["settings"]
    arrays = dict(np.load(os.path.join(plan_dir, clip["arrays"])))
    width, height, num_frames = settings["width"], settings["height"], settings["num_frames"]
    frames = list(range(num_frames))
    appearance = looks.random_appearance(clip["appearance_seed"])

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 0, num_frames - 1
    joint_names = plan["joint_names"]
    vertices, faces, weights = arrays["rest_vertices"], list(body["faces"]), body["weights"]
    colours = looks.vertex_colours(appearance, vertices, weights, arrays["rest_joints"])
    hair_vertices, hair_faces = looks.hair_geometry(appearance, vertices, weights)
    if len(hair_vertices):
        # The hair is part of the body mesh, rigid on the head bone, so it is in the person mask.
        faces += list(hair_faces + len(vertices))
        head_only = np.zeros((len(hair_vertices), weights.shape[1]))
        head_only[:, looks.HEAD_JOINT] = 1.0
        vertices, weights = np.concatenate([vertices, hair_vertices]), np.concatenate([weights, head_only])
        colours = np.concatenate([colours, np.tile(appearance.hair, (len(hair_vertices), 1))])
    armature_obj, body_obj = build_character(
        "DiMo Character", vertices, faces, weights, arrays["rest_joints"], body["parents"], joint_names, betas=arrays["betas"]
    )
    set_vertex_colours(body_obj, colours)
    key_pose(armature_obj, joint_names, arrays["armature_pose"], arrays["transl"], frames)

    cameras = [camera_path_from_dict(view["camera"], source=f"plan camera {view['name']}") for view in clip["views"]]
    camera_distance = max(float(np.linalg.norm(c.camera_to_world[:, :3, 3], axis=1).max()) for c in cameras)
    set_objects = build_background(appearance, radius=camera_distance + 3.0, collection=scene.collection)
    build_lights(appearance, scene, scene.collection)

    # Before the cameras: their lens and shift are computed for the scene's output size.
    configure_render(scene, settings["engine"], settings["samples"], width, height, settings.get("denoise", False), settings.get("threads", 0))
    writer = ClipWriter(plan["root"], clip["split"], clip["index"])
    renderer = ViewRenderer(scene, [body_obj], set_objects)
    render_start = time.perf_counter()
    try:
        for view, camera_path in zip(clip["views"], cameras):
            camera_obj = import_camera_path(camera_path, scene, name=f"DiMo {view['name']}", apply_render_settings=False)
            boxes = []
            for frame_index, rgba in render_view(renderer, camera_obj, camera_path, frames):
                writer.write_frame(view["name"], frame_index, rgba)
                if settings.get("background_plates"):
                    writer.write_background(view["name"], frame_index, renderer.last_set_rgb)
                boxes.append(person_box(rgba[..., 3]))
            writer.write_camera(view["name"], camera_path_to_dict(camera_path))
            writer.write_annotations(view["name"], **view_annotations(arrays["joints"], camera_path, boxes, (SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND)))
        writer.write_motion(
            **{key: arrays[key] for key in ("global_orient", "body_pose", "left_hand_pose", "right_hand_pose", "betas", "transl", "joints")}
        )
        manifest = {
            "format": CLIP_FORMAT,
            "version": FORMAT_VERSION,
            "clip_id": f"{clip['split']}/clip_{clip['index']:06d}",
            "split": clip["split"],
            "num_frames": num_frames,
            "fps": float(settings["fps"]),
            "width": width,
            "height": height,
            "motion": clip["motion"],
            "appearance_seed": int(clip["appearance_seed"]),
            "render": {"engine": settings["engine"], "samples": int(settings["samples"]), "denoise": bool(settings.get("denoise", False))},
            "body_model": settings["body_model"],
            "driving_view": next(view["name"] for view in clip["views"] if view["kind"] == "driving"),
            "views": [{key: value for key, value in view.items() if key != "camera"} for view in clip["views"]],
            "appearance": {"hair": appearance.hair_style, "background": appearance.background,
                           "shirt_pattern": appearance.shirt[0], "trousers_pattern": appearance.trousers[0]},
        }
        writer.commit(manifest)
        return time.perf_counter() - render_start
    except BaseException:
        writer.abandon()
        raise
    finally:
        renderer.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Render the clips of a plan written by dimo render-clips.")
    parser.add_argument("plan_dir")
    args = parser.parse_args(argv)
    with open(os.path.join(args.plan_dir, "plan.json")) as handle:
        plan = json.load(handle)
    body = dict(np.load(os.path.join(args.plan_dir, "body.npz")))
    for clip in plan["clips"]:
        if is_clip_complete(plan["root"], clip["split"], clip["index"]):
            print(f"clip-skipped {clip['index']}", flush=True)
            continue
        seconds = render_clip(args.plan_dir, plan, clip, body)
        frames = len(clip["views"]) * plan["settings"]["num_frames"]
        print(f"clip-done {clip['index']} frames={frames} render_seconds={seconds:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
