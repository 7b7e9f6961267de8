"""Render workers with real Blender: masks and depth against the scene description, worker reuse and
restart, visibility by ray casting, asset files (glTF/GLB/OBJ/PLY/.blend) and the no-script guarantee."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import textwrap

import numpy as np
import pytest

from data_engine.stage import REJECT_COLUMN, REJECT_DETAIL_COLUMN
from render.assets import file_asset
from render.checks import VISIBILITY_REASONS, reprojection_check
from render.client import (RenderDeviceUnavailable, RenderTimeout, RenderWorker, RenderWorkerError, cast_rays,
                           render_devices, render_views)
from render.geometry import trs_matrix
from render.multiview import MultiviewSettings, camera_at, camera_visibility, object_names, plan_views
from render.pipeline_stages import (MultiviewAssetReader, MultiviewAssetsConfig, RenderMultiviewConfig,
                                    RenderMultiviewStage)
from render.preprocess import SUBJECT_PASS_INDEX, AssetRejected, PreparedAsset, prepare_asset
from render.procedural import default_lights, procedural_asset
from render.scene import (Camera, FileAsset, Material, ObjectInstance, Primitive, PrimitivesAsset, RenderSettings,
                          RenderScene, matrix_tuple)

SETTINGS = RenderSettings(samples=4, threads=1)


def _box_asset(size=(0.6, 0.4, 0.8)) -> PrimitivesAsset:
    return PrimitivesAsset(name="box", category="box", materials={"m": Material(base_color=(0.6, 0.1, 0.1))},
                           parts=(Primitive(shape="box", size=size, location=(0, 0, size[2] / 2), material="m"),))


def _wall(name: str, location, size, pass_index: int) -> ObjectInstance:
    asset = PrimitivesAsset(name=name, category="wall", materials={"m": Material()},
                            parts=(Primitive(shape="box", size=size, material="m"),))
    return ObjectInstance(name=name, asset=asset, object_to_world=matrix_tuple(trs_matrix(location)),
                          pass_index=pass_index)


@pytest.fixture(scope="module")
def prepared_chair(render_worker) -> PreparedAsset:
    return prepare_asset(procedural_asset("chair", 4), render_worker, target_extent=None)


def test_masks_and_depth_match_projected_scene_points(render_worker, prepared_chair):
    scene = RenderScene(objects=(prepared_chair.instance(),), lights=default_lights(random.Random(0), 1.0))
    cameras = [camera_at(prepared_chair, azimuth, elevation, 45.0, 1.3, 128, 96)[0]
               for azimuth, elevation in ((0, 0), (135, 30), (260, 10))]
    # An off-centre principal point must move the render exactly as the intrinsics say.
    shifted = cameras[0].model_copy(update={"cx": cameras[0].cx + 9.0, "cy": cameras[0].cy - 5.0})
    views = render_views(render_worker, scene, cameras + [shifted], SETTINGS)
    for camera, view in zip(cameras + [shifted], views):
        mask = view.index_mask == SUBJECT_PASS_INDEX
        assert view.rgba.shape == (96, 128, 4) and mask.any()
        assert (view.rgba[..., 3][mask] > 0).all()
        assert np.array_equal(mask, view.depth > 0)
        check = reprojection_check(prepared_chair.convex_pieces(), camera, view.index_mask, SUBJECT_PASS_INDEX)
        assert check.error_px < 1.0 and check.iou > 0.98  # the index pass samples pixel centres, as we do
    # A camera recorded 2 px off is caught: the check measures the mistake.
    wrong = cameras[1].model_copy(update={"cx": cameras[1].cx + 2.0})
    assert reprojection_check(prepared_chair.convex_pieces(), wrong, views[1].index_mask,
                              SUBJECT_PASS_INDEX).error_px == pytest.approx(2.0, abs=0.5)
    # The same view with the principal point moved: the silhouette moves by the same pixels.
    ys, xs = np.nonzero(views[0].index_mask)
    ys_shift, xs_shift = np.nonzero(views[3].index_mask)
    assert xs_shift.mean() - xs.mean() == pytest.approx(9.0, abs=0.3)
    assert ys_shift.mean() - ys.mean() == pytest.approx(-5.0, abs=0.3)


def test_depth_is_metric_distance_along_the_optical_axis(render_worker):
    box = _box_asset()
    prepared = prepare_asset(box, render_worker, target_extent=None)
    scene = RenderScene(objects=(prepared.instance(),), lights=default_lights(random.Random(0), 1.0))
    camera, distance = camera_at(prepared, 0.0, 0.0, 40.0, 1.4, 64, 64)
    depth = render_views(render_worker, scene, [camera], SETTINGS)[0].depth
    # Looking straight at the front face (y = -0.2) from `distance` in front of the centre.
    assert depth[28:36, 28:36] == pytest.approx(distance - 0.2, abs=1e-3)


def test_a_camera_is_judged_on_the_subjects_whole_silhouette(render_worker):
    """A pole about a pixel wide is seen (the old central ray grid passed beside it); a box with a third of
    it behind a pillar is refused, its visible fraction agreeing with the rendered index pass; a wall in
    front is named; a camera looking away is off target. The beam hides only the top of a tall box, outside
    the central 40% of the image, where the old rule never looked (it accepted this view as fully visible)."""
    limits = dict(min_visible_fraction=0.8)
    pole = prepare_asset(_box_asset(size=(0.03, 0.03, 1.2)), render_worker, target_extent=None)
    pole_camera, _ = camera_at(pole, 0.0, 10.0, 45.0, 1.3, 64, 64)
    pole_scene = RenderScene(objects=(pole.instance(),))
    seen, = camera_visibility(render_worker, pole_scene, pole.convex_pieces(), [pole_camera], SUBJECT_PASS_INDEX, 300)
    assert seen.reject_reason(**limits) is None and seen.visible_fraction > 0.95 and seen.n_silhouette >= 40
    pole_mask = render_views(render_worker, pole_scene, [pole_camera], SETTINGS)[0].index_mask == SUBJECT_PASS_INDEX
    assert pole_mask.sum(axis=1).max() <= 3  # thin: at most 3 px across in any image row

    box = prepare_asset(_box_asset(size=(0.4, 0.3, 1.2)), render_worker, target_extent=None)
    front, _ = camera_at(box, 0.0, 0.0, 45.0, 1.3, 64, 64)
    clear = RenderScene(objects=(box.instance(),))
    beam = RenderScene(objects=(box.instance(), _wall("beam", (0, -0.8, 1.05), (1.0, 0.05, 0.5), 9)))
    walled = RenderScene(objects=(box.instance(), _wall("wall", (0, -1.2, 0.5), (3, 0.05, 3), 9)))
    away = front.model_copy(update={"cam_to_world": matrix_tuple(np.asarray(front.cam_to_world) @ trs_matrix(
        (0, 0, 0), (0, np.pi / 2, 0)))})
    judged = {name: camera_visibility(render_worker, scene, box.convex_pieces(), [camera], SUBJECT_PASS_INDEX, 300)[0]
              for name, scene, camera in (("clear", clear, front), ("beam", beam, front),
                                          ("walled", walled, front), ("away", clear, away))}
    assert judged["clear"].reject_reason(**limits) is None and judged["clear"].visible_fraction == 1.0
    unhidden, hidden = (render_views(render_worker, scene, [front], SETTINGS)[0].index_mask == SUBJECT_PASS_INDEX
                        for scene in (clear, beam))
    rendered_fraction = hidden.sum() / unhidden.sum()
    assert 0.6 < rendered_fraction < 0.8  # the beam hides a quarter of the box, all of it at the top
    assert judged["beam"].visible_fraction == pytest.approx(rendered_fraction, abs=0.04)
    assert judged["beam"].reject_reason(**limits) == "too_little_visible"
    assert "hidden behind beam" in judged["beam"].describe(object_names(beam), **limits)
    assert judged["walled"].reject_reason(**limits) == "obstructed"
    assert judged["walled"].describe(object_names(walled), **limits).endswith("100% hidden behind wall")
    assert judged["away"].reject_reason(**limits) == "off_target"


def test_camera_planning_records_rejections_and_keeps_only_visible_views(render_worker):
    prepared = prepare_asset(_box_asset(), render_worker, target_extent=None)
    # Walls close around the box on three sides: only cameras towards +y see it.
    walls = (_wall("south", (0, -0.9, 0.5), (3, 0.05, 3), 10), _wall("east", (0.9, 0, 0.5), (0.05, 3, 3), 11),
             _wall("west", (-0.9, 0, 0.5), (0.05, 3, 3), 12))
    scene = RenderScene(objects=(prepared.instance(),) + walls)
    settings = MultiviewSettings(n_views=2, width=48, height=48, max_attempts_per_view=12)
    plans, rejected = plan_views(render_worker, scene, prepared, random.Random(5), settings)
    assert rejected and {entry["reason"] for entry in rejected} <= {"obstructed", "too_little_visible"}
    assert {"view", "attempt", "azimuth_deg", "elevation_deg", "visible_fraction", "detail"} <= set(rejected[0])
    assert all(entry["visible_fraction"] < settings.min_visible_fraction for entry in rejected)
    assert all(any(f"hidden behind {wall}" in entry["detail"] for wall in ("south", "east", "west"))
               for entry in rejected)
    assert all(plan.visible_fraction >= settings.min_visible_fraction for plan in plans)
    assert all(100 < plan.azimuth_deg < 260 for plan in plans)  # the open side
    # Boxed in on every side: the asset is rejected for what hid it, with the cause in words.
    closed = RenderScene(objects=scene.objects + (_wall("north", (0, 0.9, 0.5), (3, 0.05, 3), 13),))
    three_attempts = settings.model_copy(update={"max_attempts_per_view": 3})
    expected = (r"view 0: all 3 candidate cameras rejected \(3 obstructed\); last: 0% of the subject's silhouette seen"
                r" \(min 80%\): 100% hidden behind")
    with pytest.raises(AssetRejected, match=expected) as caught:
        plan_views(render_worker, closed, prepared, random.Random(5), three_attempts)
    assert caught.value.reason == "obstructed" and caught.value.reason in VISIBILITY_REASONS


def test_a_thin_subject_gets_all_its_views_in_a_clear_scene(render_worker):
    """A pole lamp (a 2 cm pole under a small shade): no candidate camera is refused when nothing is in the way."""
    lamp = PrimitivesAsset(name="pole_lamp", category="lamp", materials={"m": Material()}, parts=(
        Primitive(shape="cylinder", size=(0.02, 0.02, 1.4), location=(0, 0, 0.7), material="m"),
        Primitive(shape="cone", size=(0.12, 0.12, 0.1), location=(0, 0, 1.45), material="m")))
    prepared = prepare_asset(lamp, render_worker, target_extent=None)
    settings = MultiviewSettings(n_views=4, width=64, height=64)
    plans, rejected = plan_views(render_worker, RenderScene(objects=(prepared.instance(),)), prepared, random.Random(3),
                                 settings)
    assert rejected == [] and len(plans) == 4
    assert all(plan.visible_fraction > 0.95 for plan in plans)


def test_worker_is_reused_and_restarted_after_a_crash_or_a_timeout(render_env_python):
    scene = RenderScene(objects=(ObjectInstance(name="box", asset=_box_asset(), pass_index=1),))
    prepared_camera = Camera(width=256, height=256, fx=200, fy=200, cx=127.5, cy=127.5,
                             cam_to_world=matrix_tuple(trs_matrix((0, -3, 0.4), (-np.pi / 2, 0, 0))))
    with RenderWorker(render_env_python) as worker:
        first_pid = worker.request("ping")["pid"]
        for _ in range(3):
            assert worker.request("ping")["pid"] == first_pid
        assert worker.starts == 1 and worker.requests_served == 4
        os.kill(first_pid, signal.SIGKILL)  # a crash between requests: the next one gets a fresh worker
        worker.process.wait(timeout=10)
        assert worker.request("ping")["pid"] != first_pid and worker.starts == 2
        with pytest.raises(RenderTimeout, match="within"):
            render_views(worker, scene, [prepared_camera], RenderSettings(samples=512), timeout=0.2)
        assert worker.pid is None
        assert worker.request("ping")["scripts_auto_execute"] is False and worker.starts == 3
        with pytest.raises(RenderWorkerError, match="does not exist"):
            missing = FileAsset(name="gone", path="/nonexistent/model.glb", format="glb")
            render_views(worker, RenderScene(objects=(ObjectInstance(name="gone", asset=missing, pass_index=1),)),
                         [prepared_camera], SETTINGS)
        assert worker.starts == 3  # a failed request leaves the worker usable


def _run_blender_script(python, script: str) -> None:
    result = subprocess.run([str(python), "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_asset_files_load_in_every_format(render_env_python, render_worker, tmp_path):
    """A turned box exported by Blender to each format comes back with its footprint aligned (long side along
    x), the same size, and renders on its mask."""
    _run_blender_script(render_env_python, f"""
        import bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.1, 0.2, 0.3), rotation=(0, 0, 0.5))
        bpy.context.object.scale = (0.4, 0.6, 0.8)  # long side along y, turned 0.5 rad: alignment undoes both
        bpy.ops.export_scene.gltf(filepath="{tmp_path}/box.glb", export_format="GLB")
        bpy.ops.export_scene.gltf(filepath="{tmp_path}/box.gltf", export_format="GLTF_SEPARATE")
        bpy.ops.wm.obj_export(filepath="{tmp_path}/box.obj")
        bpy.ops.wm.ply_export(filepath="{tmp_path}/box.ply")
        bpy.ops.wm.save_as_mainfile(filepath="{tmp_path}/box.blend")
    """)
    for name in ("box.glb", "box.gltf", "box.obj", "box.ply", "box.blend"):
        prepared = prepare_asset(file_asset(tmp_path / name), render_worker, target_extent=None)
        assert prepared.extent == pytest.approx([0.6, 0.4, 0.8], abs=1e-3), name
        as_is = prepare_asset(file_asset(tmp_path / name), render_worker, target_extent=None, align_footprint=False)
        assert as_is.extent[0] > 0.6 and as_is.extent[1] > 0.6  # turned: its bounding box is larger
        normalised = prepare_asset(file_asset(tmp_path / name), render_worker, target_extent=1.0)
        assert normalised.extent.max() == pytest.approx(1.0)
        assert normalised.points().min(axis=0)[2] == pytest.approx(0.0, abs=1e-6)
    scene = RenderScene(objects=(normalised.instance(),), lights=default_lights(random.Random(1), 1.0))
    camera, _ = camera_at(normalised, 30.0, 20.0, 45.0, 1.3, 64, 64)
    view = render_views(render_worker, scene, [camera], SETTINGS)[0]
    assert reprojection_check(normalised.convex_pieces(), camera, view.index_mask, SUBJECT_PASS_INDEX).error_px < 1.0


def test_file_assets_carry_the_symmetry_measured_on_their_mesh(render_env_python, render_worker, tmp_path):
    """Meshes exported by Blender: a 32-sided cylinder (off the origin), an oblong and a square box, the
    square box with a knob."""
    _run_blender_script(render_env_python, f"""
        import bpy
        def export(name, build):
            bpy.ops.wm.read_factory_settings(use_empty=True)
            build()
            bpy.ops.wm.obj_export(filepath=f"{tmp_path}/{{name}}.obj")
        export("drum", lambda: bpy.ops.mesh.primitive_cylinder_add(radius=0.2, depth=0.5, location=(0.3, 0.1, 0)))
        def box(size):
            bpy.ops.mesh.primitive_cube_add(size=1.0)
            bpy.context.object.scale = size
        export("oblong", lambda: box((0.6, 0.4, 0.3)))
        export("square", lambda: box((0.5, 0.5, 0.3)))
        def knobbed():
            box((0.5, 0.5, 0.3))
            bpy.ops.mesh.primitive_cube_add(size=0.1, location=(0.3, 0.0, 0.0))
            bpy.ops.object.select_all(action="SELECT")
            bpy.ops.object.join()
        export("knobbed", knobbed)
    """)
    measured = {name: prepare_asset(file_asset(tmp_path / f"{name}.obj"), render_worker, target_extent=1.0).symmetry
                for name in ("drum", "oblong", "square", "knobbed")}
    assert measured == {"drum": "continuous", "oblong": "2-fold", "square": "4-fold", "knobbed": "none"}


def test_scripts_in_blend_files_never_run(render_env_python, render_worker, tmp_path):
    """A .blend with an auto-registering text block and a Python driver: opened with auto-run on (the
    control) both fire; loaded as an asset by our worker, neither does."""
    text_marker, driver_marker = tmp_path / "text_ran", tmp_path / "driver_ran"
    blend = tmp_path / "evil.blend"
    _run_blender_script(render_env_python, f"""
        import bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.context.preferences.filepaths.use_scripts_auto_execute = False  # do not fire while building it
        bpy.ops.mesh.primitive_cube_add(size=0.5)
        crate = bpy.context.object
        text = bpy.data.texts.new("autorun.py")
        text.write("open({str(text_marker)!r}, 'w').write('ran')")
        text.use_module = True
        driver = crate.driver_add("location", 0).driver
        driver.type = "SCRIPTED"
        driver.expression = "len(open({str(driver_marker)!r}, 'w').name) * 0"
        bpy.ops.wm.save_as_mainfile(filepath={str(blend)!r})
    """)
    assert not text_marker.exists() and not driver_marker.exists()

    asset = file_asset(blend)
    prepared = prepare_asset(asset, render_worker, target_extent=None)
    scene = RenderScene(objects=(prepared.instance(),))
    camera, _ = camera_at(prepared, 20.0, 20.0, 45.0, 1.3, 32, 32)
    view = render_views(render_worker, scene, [camera], SETTINGS)[0]
    assert (view.index_mask == SUBJECT_PASS_INDEX).any()
    assert not text_marker.exists() and not driver_marker.exists()

    # Control: the same file opened the trusting way does run both, so the test above is meaningful.
    _run_blender_script(render_env_python, f"""
        import bpy
        bpy.context.preferences.filepaths.use_scripts_auto_execute = True
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r}, use_scripts=True)
        bpy.context.evaluated_depsgraph_get().update()
    """)
    assert text_marker.exists() and driver_marker.exists()


def test_multiview_stage_renders_file_assets_and_rejects_bad_ones_with_reasons(render_env_python, tmp_path):
    """The stage itself (no Ray): asset files under asset_root render; a corrupt file and a file row without
    an asset_root become rows with reasons."""
    (tmp_path / "assets").mkdir()
    _run_blender_script(render_env_python, f"""
        import bpy
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.mesh.primitive_cylinder_add(radius=0.2, depth=0.5)
        bpy.ops.wm.obj_export(filepath="{tmp_path}/assets/vase.obj")
    """)
    (tmp_path / "assets" / "broken.glb").write_bytes(b"glTF but not really")
    reader = MultiviewAssetReader(MultiviewAssetsConfig())
    items = reader.list_items(str(tmp_path / "assets"))
    assert items == ["broken.glb", "vase.obj"]
    settings = MultiviewSettings(n_views=2, width=48, height=48, render=RenderSettings(samples=2, threads=1))
    stage = RenderMultiviewStage(RenderMultiviewConfig(asset_root=str(tmp_path / "assets"), multiview=settings))
    stage.setup()
    try:
        columns = stage.process_batch(reader.read_items(str(tmp_path / "assets"), items))
        without_root = RenderMultiviewStage(RenderMultiviewConfig(multiview=settings))
        without_root.worker = stage.worker
        orphan = without_root.process_batch(reader.read_items(str(tmp_path / "assets"), ["vase.obj"]))
    finally:
        stage.worker.close()
    assert columns[REJECT_COLUMN] == ["render_failed", None]
    assert columns["asset_category"] == [None, "object"]
    assert "broken.glb" in columns[REJECT_DETAIL_COLUMN][0]
    assert len(columns["views"][1]) == 2 and all(e < 1.0 for e in columns["reprojection_error_px"][1])
    assert orphan[REJECT_COLUMN] == ["asset_root_not_configured"]


def test_cycles_gpu_is_used_when_configured_and_refused_in_one_line_where_there_is_none(render_worker):
    gpu = RenderSettings(samples=2, threads=1, device="GPU", gpu_backend="CUDA")
    prepared = prepare_asset(_box_asset(), render_worker, target_extent=None)
    scene = RenderScene(objects=(prepared.instance(),), lights=default_lights(random.Random(0), 1.0))
    camera = camera_at(prepared, 30.0, 20.0, 45.0, 1.4, 48, 48)[0]
    try:
        devices = render_devices(render_worker, gpu)
    except RenderDeviceUnavailable as missing:
        message = str(missing)
        assert message.startswith("render.device GPU: Cycles finds no CUDA device on this node (it sees: CPU ")
        assert "\n" not in message
        # A render request with the GPU configured fails too: it never falls back to the CPU unasked.
        with pytest.raises(RenderWorkerError, match="RenderDeviceError: render.device GPU: Cycles finds no CUDA"):
            render_views(render_worker, scene, [camera], gpu)
        # The stage refuses to start (under Ray already for holding no GPU), and leaves no worker behind.
        stage = RenderMultiviewStage(RenderMultiviewConfig(multiview=MultiviewSettings(render=gpu)))
        with pytest.raises(RenderDeviceUnavailable, match="render.device GPU"):
            stage.setup()
        assert getattr(stage, "worker", None) is None or stage.worker.pid is None
    else:  # a node with a CUDA GPU: the same view renders there
        assert devices and all(name.startswith("CUDA ") for name in devices)
        on_gpu, on_cpu = (render_views(render_worker, scene, [camera], s)[0] for s in (gpu, SETTINGS))
        assert (on_gpu.index_mask == on_cpu.index_mask).mean() > 0.99
    assert render_devices(render_worker, SETTINGS) == ["CPU"]  # the worker itself stays usable
