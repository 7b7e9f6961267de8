"""openspatial: the 3D box-centric spatial QA engine (report section 3.1.1).

Data flow, one module per step:
- coordinate conventions (world Z-up metres, OpenCV cameras, camera-to-world poses, OBB = centre + full
  extents + rotation) and every conversion from a source convention live in `data_engine.conventions`, the
  one owner `render/` shares;
- `scene`: the canonical scene format (objects, frames) with validation that names file and field;
- `adapters` (ScanNet, ARKitScenes, Matterport3D) and `procedural` (rendered rooms with exact ground truth)
  produce scenes; `lifting` produces boxes from masks + depth + poses with multi-view cycle consistency;
- RGB-D video: `sequences` (layouts; per-frame masks whose ids mean nothing across frames), `noise` (what a
  real pipeline gets wrong, for procedural sequences), `association` (per-frame masks -> tracks), `video`
  (sequence -> lifted objects -> lifted scene) and `video_reader` (the `rgbd_sequences` reader of `lift_video`);
- `projection`, `frame_index`: per (object, frame) 2D box, mask, visibility, occlusion, truncation, points;
- `qa.tasks` (the sub-task table, one module per capability), `qa.templates` (EN/ZH), `qa.checks`
  (independent re-computation), `qa.rows`;
- `reader`: the `spatial_scenes` reader kind of the `spatial_qa` job; `report`: per-task HTML report.
"""
