"""Add-on preferences: how to reach the DiMo engine, either a running service (URL + token) or
the engine's Python, with which the add-on starts and stops `dimo serve` itself."""

import bpy
from bpy.props import EnumProperty, StringProperty

from . import engine_process
from .engine_client import DEFAULT_TIMEOUT_S, EngineClient, EngineError

ADDON_ID = __package__


class DIMO_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    connection: EnumProperty(
        name="Engine",
        items=(
            ("URL", "Running Service", "Connect to a `dimo serve` that is already running"),
            ("LOCAL", "Start Locally", "Start and stop `dimo serve` from Blender with the engine's Python"),
        ),
        default="URL",
    )
    engine_url: StringProperty(name="URL", default="http://127.0.0.1:8765")
    token: StringProperty(name="Token", subtype="PASSWORD", description="Bearer token printed by `dimo serve`")
    token_file: StringProperty(
        name="Token File",
        subtype="FILE_PATH",
        description="Read URL and token from this file written by `dimo serve` (overrides URL and token when set)",
    )
    python_executable: StringProperty(
        name="Engine Python", subtype="FILE_PATH", description="Python of the environment where dimo is installed"
    )
    model_path: StringProperty(
        name="Model", subtype="DIR_PATH", description="Checkpoint folder (empty: the engine's default model)"
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "connection", expand=True)
        if self.connection == "URL":
            layout.prop(self, "engine_url")
            layout.prop(self, "token")
            layout.prop(self, "token_file")
        else:
            layout.prop(self, "python_executable")
            layout.prop(self, "model_path")
            row = layout.row(align=True)
            row.operator("dimo.start_engine", icon="PLAY")
            row.operator("dimo.stop_engine", icon="PAUSE")
        layout.operator("dimo.check_engine", icon="CHECKMARK")
        status = getattr(context.window_manager, "dimo_job", None)
        if status is not None and status.engine_status:
            layout.label(text=status.engine_status)


classes = (DIMO_AP_preferences,)


def addon_preferences(context=None):
    """The add-on's preferences, or None when the add-on is registered without being enabled."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return addon.preferences if addon is not None else None


def engine_client(context=None, timeout: float = DEFAULT_TIMEOUT_S) -> EngineClient:
    """A client for the engine the preferences point at; raises EngineError with the fix when they point nowhere."""
    prefs = addon_preferences(context)
    if prefs is None:
        raise EngineError("The DiMo add-on is not enabled; enable it in Preferences > Add-ons.")
    if prefs.connection == "LOCAL":
        engine = engine_process.local_engine()
        if engine is None or not engine.running:
            raise EngineError("The local engine is not running; press Start Engine in the DiMo preferences.")
        if engine.connection is None:
            raise EngineError("The local engine is still starting; wait a moment and try again.")
        return EngineClient(engine.connection.url, engine.connection.token, timeout=timeout)
    if prefs.token_file.strip():
        connection = engine_process.read_token_file(bpy.path.abspath(prefs.token_file))
        return EngineClient(connection.url, connection.token, timeout=timeout)
    return EngineClient(prefs.engine_url, prefs.token, timeout=timeout)


def describe_engine(info: dict) -> str:
    """One line for the panel: model, device and version."""
    model = info.get("model") or info.get("model_name") or "unknown model"
    device = info.get("device", "unknown device")
    dtype = info.get("dtype")
    version = info.get("version", "?")
    size = ""
    if info.get("width") and info.get("height"):
        size = f", {info['width']}x{info['height']}"
        if info.get("num_frames"):
            size += f"x{info['num_frames']}"
    return f"Engine {version}: {model} on {device}" + (f" ({dtype})" if dtype else "") + size
