"""Property groups of the DiMo add-on, stored on the scene as `scene.dimo`."""

import bpy

classes = ()


def attach():
    pass


def detach():
    pass
