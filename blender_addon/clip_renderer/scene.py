"""The set around a training character: ground and a cylindrical backdrop (plain, gradient or
textured by vertex colours), world colour, a sun with random angle and colour temperature and a
fill light; plus the vertex-colour material shared by Cycles and Workbench.
"""

from __future__ import annotations

import math

import bpy
import numpy as np

from ..core.appearance import Appearance, kelvin_to_rgb, pattern_mix

COLOUR_ATTRIBUTE = "Col"


def vertex_colour_material(name: str = "DiMo Vertex Colour", roughness: float = 0.7):
    """A material whose base colour is the mesh's colour attribute (Workbench reads the attribute directly)."""
    material = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    material.use_nodes = True
    nodes = material.node_tree.nodes
    bsdf = next(node for node in nodes if node.type == "BSDF_PRINCIPLED")
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_name = COLOUR_ATTRIBUTE
    material.node_tree.links.new(attribute.outputs["Color"], bsdf.inputs["Base Color"])
    bsdf.inputs["Roughness"].default_value = roughness
    return material


def set_vertex_colours(mesh_obj, colours: np.ndarray) -> None:
    """Store linear RGB per vertex (V, 3) as the active colour attribute and give the vertex-colour material."""
    mesh = mesh_obj.data
    attribute = mesh.color_attributes.get(COLOUR_ATTRIBUTE) or mesh.color_attributes.new(COLOUR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([colours, np.ones((len(colours), 1))], axis=1).astype(np.float32)
    attribute.data.foreach_set("color", rgba.ravel())
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    mesh.materials.clear()
    mesh.materials.append(vertex_colour_material())


def _grid_mesh(name, vertices, rows, columns, closed_columns, collection):
    ring = np.arange(rows - 1)[:, None]
    col = np.arange(columns if closed_columns else columns - 1)[None, :]
    nxt = (col + 1) % columns
    faces = np.stack([ring * columns + col, ring * columns + nxt, (ring + 1) * columns + nxt, (ring + 1) * columns + col], -1)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices.tolist(), [], faces.reshape(-1, 4).tolist())
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    collection.objects.link(obj)
    return obj


def build_background(appearance: Appearance, radius: float, collection) -> list:
    """Ground disc and backdrop cylinder of the given radius (metres) around the character frame origin."""
    ground_colour, low_colour, high_colour = appearance.background_colours
    height = max(6.0, 0.8 * radius)
    # Ground: polar grid, so the ground reaches the backdrop everywhere.
    radii = np.linspace(0.0, radius, 24)
    angles = np.linspace(0.0, 2 * np.pi, 64, endpoint=False)
    r, a = np.meshgrid(radii, angles, indexing="ij")
    ground_points = np.stack([r * np.cos(a), r * np.sin(a), np.zeros_like(r)], -1).reshape(-1, 3)
    ground = _grid_mesh("DiMo Ground", ground_points, len(radii), len(angles), True, collection)
    # Backdrop: cylinder wall.
    heights = np.linspace(0.0, height, 24)
    h, a = np.meshgrid(heights, angles, indexing="ij")
    wall_points = np.stack([radius * np.cos(a), radius * np.sin(a), h], -1).reshape(-1, 3)
    backdrop = _grid_mesh("DiMo Backdrop", wall_points, len(heights), len(angles), True, collection)

    kind = appearance.background
    if kind == "plain":
        ground_colours = np.tile(ground_colour, (len(ground_points), 1))
        wall_colours = np.tile(low_colour, (len(wall_points), 1))
    elif kind == "gradient":
        ground_colours = np.tile(low_colour, (len(ground_points), 1))
        t = (wall_points[:, 2] / height)[:, None]
        wall_colours = (1.0 - t) * low_colour + t * high_colour
    else:
        frequency = appearance.background_frequency
        ground_mix = pattern_mix("checks", frequency, ground_points, appearance.seed + 7)[:, None]
        ground_colours = (1.0 - ground_mix) * ground_colour + ground_mix * low_colour
        # Arc length around the wall as a texture coordinate, so the noise does not depend on the radius.
        wall_uv = np.stack([radius * np.arctan2(wall_points[:, 1], wall_points[:, 0]), wall_points[:, 2], np.zeros(len(wall_points))], -1)
        wall_mix = pattern_mix("noise", frequency, wall_uv, appearance.seed + 8)[:, None]
        wall_colours = (1.0 - wall_mix) * low_colour + wall_mix * high_colour
    set_vertex_colours(ground, ground_colours)
    set_vertex_colours(backdrop, wall_colours)
    return [ground, backdrop]


def build_lights(appearance: Appearance, scene, collection) -> list:
    """Sun at a random angle and colour temperature, a soft fill from the opposite side, and world ambient."""
    sun_data = bpy.data.lights.new("DiMo Sun", "SUN")
    sun_data.energy = appearance.sun_strength
    sun_data.color = kelvin_to_rgb(appearance.sun_kelvin).tolist()
    sun_data.angle = math.radians(3.0)
    sun = bpy.data.objects.new("DiMo Sun", sun_data)
    elevation = math.radians(appearance.sun_elevation_deg)
    azimuth = math.radians(appearance.sun_azimuth_deg)
    # A sun shines along its local -Z: tilt from zenith by (90 - elevation), then turn to the azimuth.
    sun.rotation_euler = (math.pi / 2 - elevation, 0.0, azimuth)
    collection.objects.link(sun)

    fill_data = bpy.data.lights.new("DiMo Fill", "SUN")
    fill_data.energy = appearance.fill_strength
    fill_data.color = kelvin_to_rgb(12000.0 - appearance.sun_kelvin).tolist()
    fill_data.angle = math.radians(60.0)
    fill = bpy.data.objects.new("DiMo Fill", fill_data)
    fill.rotation_euler = (math.radians(60.0), 0.0, azimuth + math.pi)
    collection.objects.link(fill)

    world = scene.world or bpy.data.worlds.new("DiMo World")
    scene.world = world
    world.use_nodes = True
    background = next(node for node in world.node_tree.nodes if node.type == "BACKGROUND")
    sky = 0.5 * (appearance.background_colours[2] + 0.3)
    background.inputs["Color"].default_value = (*sky.tolist(), 1.0)
    background.inputs["Strength"].default_value = 0.4
    world.color = sky.tolist()  # what Workbench shows behind everything
    # Workbench has no lamps: turn its studio light with the sun so looks still vary.
    scene.display.shading.light = "STUDIO"
    scene.display.shading.studiolight_rotate_z = math.radians(((appearance.sun_azimuth_deg + 180.0) % 360.0) - 180.0)
    return [sun, fill]
