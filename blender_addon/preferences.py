"""Add-on preferences: how to reach the DiMo engine."""

import bpy

classes = ()
