"""render: everything that touches Blender (bpy), which runs only in render worker processes.

scene.py (plain-Python scene description) -> client.py (main side) <-> worker.py + blender_scene.py (render
environment, the only bpy code); procedural.py and assets.py make and measure assets, preprocess.py poses
them, symmetry.py says which turns leave them unchanged, multiview.py and spatial_edit.py build samples,
checks.py verifies geometry and judges what a camera sees, pipeline_stages.py wires readers and stages into
jobs, vlm_stages.py asks the captioning backends about the rendered images (recognisability, dense captions).
geometry.py holds the scene-building maths (transforms, orbits, named views, Blender lens); coordinate
conventions, the OpenCV <-> Blender camera flip and projection are `data_engine.conventions`', shared with
openspatial.
"""
