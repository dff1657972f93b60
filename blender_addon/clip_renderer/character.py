"""A Blender character built from SMPL-H body arrays: a skinned mesh and an armature whose deform
equals smplx's linear blend skinning (without pose correctives), posed from axis-angle parameters.

Every bone's rest orientation is the identity in armature space (head at its joint, pointing +Y,
roll 0), so a pose bone's rotation is the SMPL-H joint rotation itself and Blender's chain
`pose = parent_pose @ parent_rest^-1 @ rest @ basis` is exactly SMPL's `G_k = G_parent [R_k | J_k - J_parent]`.
"""

from __future__ import annotations

import bpy
import numpy as np

# Bone length only matters for display; the rest orientation (+Y, roll 0) is what makes deform exact.
_BONE_LENGTH = 0.03
# Marks an armature as the project's SMPL-H rig, so scene clips can write SMPL-H parameters for it.
SMPLH_RIG_PROPERTY = "dimo_smplh_rig"


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle in radians -> (..., 4) unit quaternions (w, x, y, z)."""
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(axis_angle, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 for small angles; avoids dividing by zero at the rest pose.
    scale = np.where(angle > 1e-8, np.sin(half) / np.maximum(angle, 1e-12), 0.5)
    return np.concatenate([np.cos(half), axis_angle * scale], axis=-1)


def build_character(
    name: str,
    rest_vertices: np.ndarray,
    faces: np.ndarray,
    weights: np.ndarray,
    rest_joints: np.ndarray,
    parents: np.ndarray,
    joint_names: list[str],
    collection=None,
    betas=None,
):
    """Create the armature and its skinned mesh child; returns (armature_obj, mesh_obj).

    rest_vertices (V,3) and rest_joints (J,3) are the shaped rest pose in SMPL canonical axes,
    weights (V,J) the LBS weights, parents (J,) with -1 for the root.
    """
    collection = collection or bpy.context.scene.collection
    rest_vertices = np.asarray(rest_vertices, dtype=np.float64)
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)

    armature = bpy.data.armatures.new(f"{name} Armature")
    armature_obj = bpy.data.objects.new(name, armature)
    collection.objects.link(armature_obj)
    _add_bones(armature_obj, rest_joints, parents, joint_names)
    armature_obj[SMPLH_RIG_PROPERTY] = len(joint_names) == 52
    # Blender orders pose bones by hierarchy, not creation; keep the SMPL-H order by name.
    armature_obj["dimo_joint_names"] = list(joint_names)
    if betas is not None:
        armature_obj["dimo_betas"] = [float(b) for b in betas]

    mesh = bpy.data.meshes.new(f"{name} Mesh")
    # faces: (T,3) array or a list of polygons of any size (the hair adds quads).
    mesh.from_pydata(rest_vertices.tolist(), [], [list(map(int, face)) for face in faces])
    mesh.update()
    mesh_obj = bpy.data.objects.new(f"{name} Body", mesh)
    collection.objects.link(mesh_obj)
    _add_vertex_groups(mesh_obj, weights, joint_names)
    mesh_obj.parent = armature_obj
    modifier = mesh_obj.modifiers.new("Armature", "ARMATURE")
    modifier.object = armature_obj
    modifier.use_vertex_groups = True
    modifier.use_deform_preserve_volume = False  # linear blend skinning, as smplx
    for polygon in mesh.polygons:
        polygon.use_smooth = True
    return armature_obj, mesh_obj


def _add_bones(armature_obj, rest_joints, parents, joint_names):
    # Edit bones only exist in edit mode, which needs the object active in the view layer.
    view_layer = bpy.context.view_layer
    previous_active = view_layer.objects.active
    view_layer.objects.active = armature_obj
    bpy.ops.object.mode_set(mode="EDIT")
    edit_bones = armature_obj.data.edit_bones
    bones = []
    for joint, name in zip(rest_joints, joint_names):
        bone = edit_bones.new(name)
        bone.head = joint.tolist()
        bone.tail = (joint + np.array([0.0, _BONE_LENGTH, 0.0])).tolist()
        bone.roll = 0.0
        bones.append(bone)
    for index, parent in enumerate(parents):
        if parent >= 0:
            bones[index].parent = bones[int(parent)]
            bones[index].use_connect = False
    bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = previous_active
    for pose_bone in armature_obj.pose.bones:
        pose_bone.rotation_mode = "QUATERNION"


def _add_vertex_groups(mesh_obj, weights, joint_names):
    for joint_index, name in enumerate(joint_names):
        group = mesh_obj.vertex_groups.new(name=name)
        column = weights[:, joint_index]
        for vertex_index in np.nonzero(column > 1e-6)[0]:
            group.add([int(vertex_index)], float(column[vertex_index]), "REPLACE")


def key_pose(armature_obj, joint_names, armature_pose: np.ndarray, transl: np.ndarray, frames) -> None:
    """Key the armature per frame: armature_pose (F,J,3) axis-angle per joint (root = global orient,
    hand poses already including any hand mean), transl (F,3) the root translation."""
    quaternions = axis_angle_to_quaternion(armature_pose)  # (F, J, 4)
    pose_bones = [armature_obj.pose.bones[name] for name in joint_names]
    root = pose_bones[0]
    for frame_index, frame in enumerate(frames):
        for joint_index, pose_bone in enumerate(pose_bones):
            pose_bone.rotation_quaternion = quaternions[frame_index, joint_index].tolist()
            pose_bone.keyframe_insert("rotation_quaternion", frame=int(frame))
        # Rest rotation is identity, so the location basis is the armature-space translation.
        root.location = np.asarray(transl[frame_index], dtype=np.float64).tolist()
        root.keyframe_insert("location", frame=int(frame))
    for fcurve in _fcurves(armature_obj):
        for point in fcurve.keyframe_points:
            point.interpolation = "CONSTANT"


def _fcurves(obj):
    action = obj.animation_data.action if obj.animation_data else None
    if action is None:
        return []
    if hasattr(action, "fcurves") and len(getattr(action, "layers", [])) == 0:
        return list(action.fcurves)
    curves = []
    for layer in action.layers:
        for strip in layer.strips:
            for channelbag in strip.channelbags:
                curves.extend(channelbag.fcurves)
    return curves
