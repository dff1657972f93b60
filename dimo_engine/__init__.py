"""DiMo engine: camera math, body model, motion encoders, the DiMo transformer and pipeline, service and CLI.

Everything that needs torch lives here; the Blender add-on (`blender_addon`) talks to it over HTTP.
"""

__version__ = "0.1.0"
