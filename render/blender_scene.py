"""The one module that touches bpy: scene description (as JSON dicts) -> Blender data -> rendered files.

Runs only inside a render worker (render/worker.py) under the render environment's Python. Scripts
embedded in asset files never run: auto-execution is switched off before anything is loaded, .blend
assets are appended datablock by datablock (never opened as the main file), and Python-expression
drivers are therefore left unevaluated by Blender.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import bpy  # noqa: I001 (bpy first: it makes bmesh and mathutils importable)
import bmesh
import numpy as np
import OpenEXR
from mathutils import Matrix, Vector

from data_engine.conventions import pose_to_opengl
from render.geometry import blender_camera_parameters, look_at_pose, trs_matrix

_EXR_DEPTH = "ViewLayer.Depth.Z"
_EXR_INDEX = "ViewLayer.Object Index.X"
_EXR_COMBINED = ("ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B", "ViewLayer.Combined.A")
BACKGROUND_DEPTH = 0.0  # depth written for pixels that hit nothing (Blender writes 1e10)


class AssetLoadError(RuntimeError):
    """An asset file could not be imported."""


class RenderDeviceError(RuntimeError):
    """The configured Cycles device does not exist on this node."""


def disable_script_autoexec() -> None:
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False


def reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    disable_script_autoexec()


def _matrix(array: Any) -> Matrix:
    return Matrix([list(map(float, row)) for row in np.asarray(array, dtype=float)])


def _unit_mesh(shape: str, cache: dict[str, bpy.types.Mesh]) -> bpy.types.Mesh:
    """Primitives of unit size (extent 1 along each axis, centred), shared by every part of that shape."""
    if shape in cache:
        return cache[shape]
    mesh = bpy.data.meshes.new(f"unit_{shape}")
    bm = bmesh.new()
    if shape == "box":
        bmesh.ops.create_cube(bm, size=1.0)
    elif shape == "cylinder":
        bmesh.ops.create_cone(bm, cap_ends=True, segments=48, radius1=0.5, radius2=0.5, depth=1.0)
    elif shape == "cone":
        bmesh.ops.create_cone(bm, cap_ends=True, segments=48, radius1=0.5, radius2=0.0, depth=1.0)
    elif shape == "sphere":
        bmesh.ops.create_uvsphere(bm, u_segments=48, v_segments=24, radius=0.5)
    else:
        raise ValueError(f"no unit mesh for shape {shape!r}")
    bm.to_mesh(mesh)
    bm.free()
    mesh.materials.append(None)  # one slot, filled per object
    if shape != "box":
        mesh.shade_smooth()
    cache[shape] = mesh
    return mesh


def _material(name: str, spec: dict[str, Any]) -> bpy.types.Material:
    material = bpy.data.materials.new(name)
    material.use_nodes = True
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*spec["base_color"], 1.0)
    bsdf.inputs["Roughness"].default_value = spec["roughness"]
    bsdf.inputs["Metallic"].default_value = spec["metallic"]
    return material


def _link(obj: bpy.types.Object) -> bpy.types.Object:
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _text_part(name: str, part: dict[str, Any], material: bpy.types.Material, pose: np.ndarray) -> bpy.types.Object:
    curve = bpy.data.curves.new(name, "FONT")
    curve.body = part["text"]
    curve.align_x, curve.align_y = "CENTER", "CENTER"
    curve.extrude = 0.2  # in font units; scaled with the text below
    obj = _link(bpy.data.objects.new(name, curve))
    obj.data.materials.append(material)
    bpy.context.view_layer.update()
    width, height = max(obj.dimensions.x, 1e-6), max(obj.dimensions.y, 1e-6)
    scale = min(part["size"][0] / width, part["size"][2] / height)
    # Text lies in its local xy plane facing +z; a quarter turn about x makes it face -y, upright.
    rotation = np.array(part["rotation_euler"]) + np.array([math.pi / 2, 0.0, 0.0])
    obj.matrix_world = _matrix(pose @ trs_matrix(part["location"], rotation, (scale, scale, scale * 0.01)))
    return obj


def _primitives_objects(instance: dict[str, Any], meshes: dict[str, bpy.types.Mesh]) -> list[bpy.types.Object]:
    asset = instance["asset"]
    materials = {key: _material(f"{instance['name']}/{key}", spec) for key, spec in asset["materials"].items()}
    pose = np.asarray(instance["object_to_world"], dtype=float)
    objects = []
    for index, part in enumerate(asset["parts"]):
        name = f"{instance['name']}/{index}"
        if part["shape"] == "text":
            objects.append(_text_part(name, part, materials[part["material"]], pose))
            continue
        obj = _link(bpy.data.objects.new(name, _unit_mesh(part["shape"], meshes)))
        # Unit meshes are shared, so the material lives on the object's slot, not on the mesh.
        obj.material_slots[0].link = "OBJECT"
        obj.material_slots[0].material = materials[part["material"]]
        obj.matrix_world = _matrix(pose @ trs_matrix(part["location"], part["rotation_euler"], part["size"]))
        objects.append(obj)
    return objects


def _import_file(asset: dict[str, Any]) -> list[bpy.types.Object]:
    path, fmt = asset["path"], asset["format"]
    if not Path(path).is_file():
        raise AssetLoadError(f"{path}: asset file does not exist")
    before = set(bpy.data.objects)
    try:
        if fmt == "blend":
            return _append_blend_objects(path)
        if fmt in ("gltf", "glb"):
            bpy.ops.import_scene.gltf(filepath=path)
        elif fmt == "obj":
            bpy.ops.wm.obj_import(filepath=path)
        elif fmt == "ply":
            bpy.ops.wm.ply_import(filepath=path)
    except RuntimeError as exc:
        raise AssetLoadError(f"{path}: {fmt} import failed: {str(exc).strip().splitlines()[-1]}") from None
    imported = [obj for obj in bpy.data.objects if obj not in before]
    if not any(obj.type == "MESH" for obj in imported):
        raise AssetLoadError(f"{path}: no mesh in the file")
    return imported


def _append_blend_objects(path: str) -> list[bpy.types.Object]:
    """Append the mesh objects of a .blend; its text blocks and scripts stay behind, unexecuted."""
    with bpy.data.libraries.load(path, link=False) as (source, target):
        target.objects = list(source.objects)
    objects = [obj for obj in target.objects if obj is not None]
    meshes = [obj for obj in objects if obj.type == "MESH"]
    if not meshes:
        raise AssetLoadError(f"{path}: no mesh object in the .blend")
    for obj in meshes:
        _link(obj)
    return meshes


def _file_objects(instance: dict[str, Any]) -> list[bpy.types.Object]:
    objects = _import_file(instance["asset"])
    pose = _matrix(instance["object_to_world"])
    for obj in objects:
        if obj.parent is None:
            # matrix_basis, not matrix_world: an appended object's world matrix is stale until evaluated.
            obj.matrix_world = pose @ obj.matrix_basis
    return [obj for obj in objects if obj.type == "MESH"]


def _light(spec: dict[str, Any], index: int) -> None:
    data = bpy.data.lights.new(f"light_{index}", spec["kind"].upper())
    data.energy = spec["energy"]
    data.color = spec["color"]
    if spec["kind"] == "area":
        data.size = spec["size"]
    obj = _link(bpy.data.objects.new(f"light_{index}", data))
    location = np.asarray(spec["location"], dtype=float)
    # Lights shine along their local -z, like a Blender camera looks.
    obj.matrix_world = _matrix(pose_to_opengl(look_at_pose(location, location + np.asarray(spec["direction"]))))


def _world(spec: dict[str, Any]) -> None:
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    world.use_nodes = True
    background = world.node_tree.nodes["Background"]
    background.inputs["Color"].default_value = (*spec["color"], 1.0)
    background.inputs["Strength"].default_value = spec["strength"]


def build_scene(scene: dict[str, Any]) -> dict[str, list[str]]:
    """Replace Blender's data with `scene`; returns object name -> Blender object names."""
    reset()
    meshes: dict[str, bpy.types.Mesh] = {}
    created: dict[str, list[str]] = {}
    for instance in scene["objects"]:
        if instance["asset"]["kind"] == "primitives":
            objects = _primitives_objects(instance, meshes)
        else:
            objects = _file_objects(instance)
        for obj in objects:
            obj.pass_index = instance["pass_index"]
        created[instance["name"]] = [obj.name for obj in objects]
    for index, light in enumerate(scene["lights"]):
        _light(light, index)
    _world(scene["world"])
    camera = _link(bpy.data.objects.new("camera", bpy.data.cameras.new("camera")))
    bpy.context.scene.camera = camera
    return created


def select_devices(settings: dict[str, Any]) -> list[str]:
    """Enable the Cycles devices `settings` asks for and name them ("OPTIX NVIDIA H100 ..."). A GPU request
    on a node without a device of that backend raises: Cycles would otherwise render on the CPU unasked."""
    if settings["device"] == "CPU":
        return ["CPU"]
    backend = settings["gpu_backend"]
    preferences = bpy.context.preferences.addons["cycles"].preferences
    preferences.compute_device_type = backend
    preferences.get_devices()
    gpus = [device for device in preferences.devices if device.type == backend]
    if not gpus:
        seen = ", ".join(f"{device.type} {device.name}" for device in preferences.devices) or "none"
        raise RenderDeviceError(f"render.device GPU: Cycles finds no {backend} device on this node (it sees: "
                                f"{seen}); set render.device CPU, or run the stage on a GPU node")
    for device in preferences.devices:
        device.use = device.type == backend
    return [f"{device.type} {device.name}" for device in gpus]


def configure_render(settings: dict[str, Any]) -> None:
    scene = bpy.context.scene
    render = scene.render
    render.engine = settings["engine"]
    scene.cycles.samples = settings["samples"]
    scene.cycles.use_denoising = settings["denoise"]
    scene.cycles.use_adaptive_sampling = False
    # A one-pixel box filter keeps every sample inside its pixel, so the object-index mask cannot bleed
    # more than half a pixel past the true silhouette (the reprojection check relies on it).
    scene.cycles.pixel_filter_type, scene.cycles.filter_width = "BOX", 1.0
    select_devices(settings)
    scene.cycles.device = settings["device"]
    if settings["threads"]:
        render.threads_mode, render.threads = "FIXED", settings["threads"]
    else:
        render.threads_mode = "AUTO"
    render.film_transparent = True  # the main side composites over backgrounds
    render.use_compositing = False  # the compositor would drop every pass but Combined from the file
    render.use_sequencer = False
    render.resolution_percentage = 100
    view_layer = bpy.context.view_layer
    view_layer.use_pass_z = True
    view_layer.use_pass_object_index = True
    view_layer.cycles.denoising_store_passes = False
    render.image_settings.media_type = "MULTI_LAYER_IMAGE"
    render.image_settings.color_depth = "32"
    # Uncompressed: the file lives for one read in the same process; ZIP costs more than the disk saves.
    render.image_settings.exr_codec = "NONE"


def set_camera(camera: dict[str, Any]) -> None:
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = camera["width"], camera["height"]
    data = scene.camera.data
    data.sensor_fit = "HORIZONTAL"
    parameters = blender_camera_parameters(camera["width"], camera["height"], camera["fx"], camera["cx"], camera["cy"])
    for key, value in parameters.items():
        setattr(data, key, value)
    data.clip_start, data.clip_end = 0.01, 1000.0
    scene.camera.matrix_world = _matrix(pose_to_opengl(np.asarray(camera["cam_to_world"])))


def _read_exr(path: Path) -> dict[str, np.ndarray]:
    channels: dict[str, np.ndarray] = {}
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        for part in exr.parts:  # Blender writes one EXR part per pass
            for name, channel in part.channels.items():
                channels[name] = channel.pixels
    return channels


def _linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * np.power(linear, 1 / 2.4) - 0.055)


# Linear [0, 1] quantised to 16 bits -> 8-bit sRGB: a table lookup instead of a power per pixel. Within 0.03
# of an 8-bit level of the exact curve, so only the rare pixel next to a rounding boundary moves one level.
_SRGB_LEVELS = 1 << 16
_SRGB_TABLE = np.round(_linear_to_srgb(np.arange(_SRGB_LEVELS) / (_SRGB_LEVELS - 1)) * 255).astype(np.uint8)


def _straight_srgba(premultiplied: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Cycles' premultiplied linear RGB and alpha -> H x W x 4 uint8, straight alpha, sRGB."""
    rgba = np.empty((*alpha.shape, 4), dtype=np.uint8)
    weight = alpha[..., None]
    straight = np.divide(premultiplied, weight, out=np.zeros_like(premultiplied), where=weight > 0)
    rgba[..., :3] = _SRGB_TABLE[np.clip(straight * (_SRGB_LEVELS - 1) + 0.5, 0, _SRGB_LEVELS - 1).astype(np.uint16)]
    rgba[..., 3] = np.round(np.clip(alpha, 0.0, 1.0) * 255)
    return rgba


def render_view(camera: dict[str, Any], out_stem: Path) -> dict[str, Any]:
    """Render one camera; write .npy arrays: RGBA uint8 (straight alpha, sRGB), depth float32 (metres along
    the optical axis, 0 where nothing was hit) and the uint8 index mask (object pass indices). Raw arrays,
    not PNGs: the main side decodes them next, so encoding here would be work done twice."""
    set_camera(camera)
    exr_path = out_stem.with_suffix(".exr")
    bpy.context.scene.render.filepath = str(exr_path)
    bpy.ops.render.render(write_still=True)
    channels = _read_exr(exr_path)
    exr_path.unlink()
    premultiplied = np.stack([channels[name] for name in _EXR_COMBINED[:3]], axis=-1)
    depth = channels[_EXR_DEPTH].astype(np.float32)
    depth[depth > 1e9] = BACKGROUND_DEPTH
    paths = {"image": f"{out_stem}.rgba.npy", "depth": f"{out_stem}.depth.npy", "mask": f"{out_stem}.mask.npy"}
    np.save(paths["image"], _straight_srgba(premultiplied, channels[_EXR_COMBINED[3]]))
    np.save(paths["depth"], depth)
    np.save(paths["mask"], np.round(channels[_EXR_INDEX]).astype(np.uint8))
    return paths


def cast_rays(origin: list[float], directions: list[list[float]], max_distance: float,
              target_pass_index: int | None, max_layers: int = 16) -> dict[str, list[Any]]:
    """First object hit along each ray (its pass index, 0: nothing) and whether the ray reaches the target
    object at all, first or behind other surfaces (marching past up to `max_layers` hits)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    scene = bpy.context.scene
    start = Vector(origin)
    first_hits, reaches_target = [], []
    for raw_direction in directions:
        direction = Vector(raw_direction)
        position, travelled, first, reached = start, 0.0, 0, False
        for _ in range(max_layers):
            hit, location, _, _, obj, _ = scene.ray_cast(depsgraph, position, direction,
                                                         distance=max_distance - travelled)
            if not hit:
                break
            first = first or int(obj.pass_index)
            if target_pass_index is None or obj.pass_index == target_pass_index:
                reached = obj.pass_index == target_pass_index
                break
            step = (location - position).length + 1e-4  # continue just past the surface
            travelled += step
            position = position + direction * step
        first_hits.append(first)
        reaches_target.append(reached)
    return {"pass_indices": first_hits, "reaches_target": reaches_target}


def object_geometry(object_names: list[str], max_triangles: int) -> dict[str, Any]:
    """World-space triangles (each 3 x 3) and vertex count of the evaluated meshes of some Blender objects."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    triangles, n_vertices = [], 0
    for name in object_names:
        evaluated = bpy.data.objects[name].evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        mesh.calc_loop_triangles()
        local = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
        mesh.vertices.foreach_get("co", local)
        corners = np.empty(len(mesh.loop_triangles) * 3, dtype=np.int64)
        mesh.loop_triangles.foreach_get("vertices", corners)
        n_vertices += len(mesh.vertices)
        evaluated.to_mesh_clear()
        matrix = np.array(evaluated.matrix_world)
        world = local.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
        triangles.append(world[corners].reshape(-1, 3, 3))
    stacked = np.concatenate(triangles) if triangles else np.zeros((0, 3, 3))
    if len(stacked) > max_triangles:
        raise ValueError(f"{len(stacked)} triangles, more than the {max_triangles} allowed; decimate the asset")
    return {"n_vertices": n_vertices, "triangles": stacked.tolist()}


def blender_version() -> str:
    return bpy.app.version_string


def scripts_auto_execute() -> bool:
    return bool(bpy.context.preferences.filepaths.use_scripts_auto_execute)
