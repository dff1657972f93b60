"""The add-on's bpy-free core: what the Blender side and the engine both need, in numpy and the
standard library only. Camera path files (`camera_path`), camera rigs (`camera_rigs`) and text
phrases (`camera_phrases`); the clip dataset's views (`clip_views`), looks (`appearance`),
2D annotations (`annotations`) and format and writer (`clip_format`); the engine service's HTTP
contract (`api_schema`) and the one atomic writer (`atomic_io`).

Nothing here imports bpy, the engine or training: `import dimo_engine` reaches the add-on only
through this package, so it never loads Blender.
"""
