"""The add-on registers and unregisters cleanly, and every panel, list and the preferences draw against
a recording layout that checks each property and operator they name exists."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from addon_scene import enable_addon

pytestmark = pytest.mark.blender


class RecordingLayout:
    """Stands in for `UILayout`: records calls, checks named properties and operators exist."""

    def __init__(self, calls=None):
        self.calls = [] if calls is None else calls
        self.enabled = True
        self.use_property_split = False
        self.active = True
        self.alert = False

    def _sub(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        return RecordingLayout(self.calls)

    def row(self, **kwargs):
        return self._sub("row", **kwargs)

    def column(self, **kwargs):
        return self._sub("column", **kwargs)

    def box(self):
        return self._sub("box")

    def split(self, **kwargs):
        return self._sub("split", **kwargs)

    def label(self, text="", **kwargs):
        assert isinstance(text, str)
        self.calls.append(("label", (text,), kwargs))

    def separator(self, **kwargs):
        self.calls.append(("separator", (), kwargs))

    def prop(self, data, property_name, **kwargs):
        assert property_name in data.bl_rna.properties, f"{data} has no property {property_name!r}"
        self.calls.append(("prop", (property_name,), kwargs))

    def operator(self, idname, **kwargs):
        import bpy

        module, name = idname.split(".")
        getattr(getattr(bpy.ops, module), name).get_rna_type()  # raises KeyError when not registered
        self.calls.append(("operator", (idname,), kwargs))
        return SimpleNamespace()

    def progress(self, factor=0.0, type="BAR", text=""):
        assert 0.0 <= factor <= 1.0
        self.calls.append(("progress", (factor, text), {}))

    def template_list(self, list_type, list_id, data, property_name, active_data, active_property, **kwargs):
        import bpy

        assert hasattr(bpy.types, list_type), f"UI list {list_type} is not registered"
        assert property_name in data.bl_rna.properties and active_property in active_data.bl_rna.properties
        self.calls.append(("template_list", (list_type, property_name), kwargs))

    def names(self, kind):
        return [args[0] for name, args, _ in self.calls if name == kind]


def draw_panel(panel_class, context) -> RecordingLayout:
    layout = RecordingLayout()
    panel_class.draw(SimpleNamespace(layout=layout), context)
    return layout


def test_register_and_unregister_cleanly():
    import bpy  # first: it puts Blender's own modules (addon_utils) on sys.path
    import addon_utils

    enable_addon()
    for cycle in range(2):
        assert hasattr(bpy.types.Scene, "dimo") and hasattr(bpy.types.WindowManager, "dimo_job")
        assert hasattr(bpy.types, "DIMO_PT_main") and hasattr(bpy.ops.dimo, "generate")
        assert bpy.context.scene.dimo.resolution == "128"
        addon_utils.disable("blender_addon", default_set=True, handle_error=None)
        assert not hasattr(bpy.types.Scene, "dimo") and not hasattr(bpy.types.WindowManager, "dimo_job")
        assert not hasattr(bpy.types, "DIMO_PT_main")
        assert "blender_addon" not in bpy.context.preferences.addons
        enable_addon()
    assert hasattr(bpy.types, "DIMO_PT_takes")


def test_register_and_unregister_called_twice_do_not_raise():
    import bpy

    import blender_addon

    enable_addon()
    blender_addon.register()  # already registered by the add-on system
    assert hasattr(bpy.types.Scene, "dimo") and hasattr(bpy.ops.dimo, "generate")
    blender_addon.unregister()
    blender_addon.unregister()
    assert not hasattr(bpy.types.Scene, "dimo") and not hasattr(bpy.types, "DIMO_PT_main")
    blender_addon.register()
    blender_addon.register()
    assert hasattr(bpy.types.Scene, "dimo") and hasattr(bpy.types, "DIMO_PT_main")
    assert bpy.context.scene.dimo.resolution == "128"


def test_every_panel_draws_idle_running_and_with_takes(tmp_path):
    import bpy

    from blender_addon import long_work, ui
    from blender_addon.ui import panels

    enable_addon()
    context = bpy.context
    state = context.window_manager.dimo_job
    state.engine_status, state.error, state.message = "Engine 0.1.0: tiny on cpu", "The engine is down; start it.", "Done"
    drawn = {}
    for panel in (cls for cls in ui.classes if issubclass(cls, bpy.types.Panel)):
        layout = draw_panel(panel, context)
        assert layout.calls, f"{panel.__name__} drew nothing"
        drawn[panel.__name__] = layout
    assert "dimo.generate" in drawn["DIMO_PT_generate"].names("operator")
    assert "The engine is down; start it." in drawn["DIMO_PT_generate"].names("label")
    assert {"anchor", "reference_image", "reference_camera"} <= set(drawn["DIMO_PT_character"].names("prop"))
    assert "dimo.render_driving" in drawn["DIMO_PT_driving"].names("operator")
    assert {"target_cameras", "frame_start", "frame_end"} <= set(drawn["DIMO_PT_cameras"].names("prop"))
    assert "dimo.measure_character_height" in drawn["DIMO_PT_settings"].names("operator")
    assert {"num_inference_steps", "motion_guidance_scale", "seed", "character_height", "resolution"} <= set(
        drawn["DIMO_PT_settings"].names("prop"))

    # While a job runs the panel shows progress and Cancel instead of Generate.
    running = SimpleNamespace(finished=False)
    original = long_work._latest.get("generate")
    long_work._latest["generate"] = running
    try:
        state.progress, state.message = 0.4, "Denoising 40%"
        layout = draw_panel(panels.DIMO_PT_generate, context)
    finally:
        long_work._latest.pop("generate")
        if original is not None:
            long_work._latest["generate"] = original
    assert layout.names("progress") == [pytest.approx(0.4)]
    assert "dimo.cancel" in layout.names("operator") and "dimo.generate" not in layout.names("operator")

    item = context.scene.dimo.takes.add()
    item.name, item.num_frames = "Cam/take_001", 17
    list_layout = RecordingLayout()
    panels.DIMO_UL_takes.draw_item(None, context, list_layout, context.scene.dimo, item, 0, None, "", index=0)
    assert "Cam/take_001" in list_layout.names("label") and "dimo.switch_take" in list_layout.names("operator")
    context.scene.dimo.takes.clear()


@pytest.mark.parametrize("connection", ["URL", "LOCAL"])
def test_preferences_draw_both_connections(connection):
    import bpy

    prefs = enable_addon()
    prefs.connection = connection
    layout = RecordingLayout()
    values = {name: getattr(prefs, name) for name in prefs.bl_rna.properties.keys() if name != "rna_type"}
    type(prefs).draw(SimpleNamespace(layout=layout, bl_rna=prefs.bl_rna, **values), bpy.context)
    assert "dimo.check_engine" in layout.names("operator")
    expected = {"URL": "engine_url", "LOCAL": "python_executable"}[connection]
    assert expected in layout.names("prop")
    assert ("dimo.start_engine" in layout.names("operator")) == (connection == "LOCAL")
