"""Synthetic view-rich training clips rendered by Blender: an SMPL-H character with random looks,
backgrounds and lights, seen from many cameras, written in the clip dataset format of docs/formats.md.

The submodules that build scenes need `bpy`; `writer` and `appearance` colour/shape choices are numpy only.
"""
