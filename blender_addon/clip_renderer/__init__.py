"""Synthetic view-rich training clips rendered by Blender: an SMPL-H character with random looks,
backgrounds and lights, seen from many cameras, written in the clip dataset format of docs/formats.md.

Everything here needs `bpy`; the numpy-only parts the engine's planner shares (views, looks,
annotations, the clip writer) live in `blender_addon.core`.
"""
