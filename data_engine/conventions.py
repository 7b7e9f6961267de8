"""The one place that owns coordinate conventions, the conversions into and out of them, and pinhole projection.

It lives in the engine because both clients need it without importing each other: `openspatial/` (dataset
adapters, projection of boxes into frames) and `render/` (Blender cameras, ray-cast visibility checks, also
inside bpy worker processes, so this module needs numpy only; scipy is imported where one function needs it).

Canonical conventions (every other module assumes them):
- world: Z up, gravity along -Z, metres;
- camera: OpenCV (x right, y down, z forward), intrinsics K as a 3x3 pinhole matrix in pixels;
- pose: camera-to-world 4x4 (`world_point = pose @ camera_point`);
- oriented box (OBB): centre (3,), extents = FULL side lengths (3,) along the box's local axes, rotation (3, 3)
  whose columns are the box's local axes in world coordinates. An object's front, when it has one, is its
  local +x axis.

- camera heading and motion: a camera's heading is the horizontal direction it faces (`camera_heading`); how a
  camera moved between two views is expressed in the gravity-aligned frame of the FIRST camera
  (`gravity_aligned_camera_frame`): origin at its centre, x its heading, y to its left, z up. A move is
  classified by its horizontal components there (a pitched camera's own z axis mixes in vertical motion), a turn
  by the signed angle between the two headings (counter-clockwise seen from above = left).

Sources use other conventions; each converter below names the one it reads, and each has a round-trip test
(tests/data_engine/test_conventions.py). Blender's camera is the OpenGL one (`pose_to_opengl`).

Pixel coordinates: the image's outer edges are at 0 and W (0 and H), so pixel (col, row) has its centre at
(col + 0.5, row + 0.5); K's principal point is in these coordinates (a centred camera has cx = W / 2). Each
source's own convention, and the conversion its adapter applies (`openspatial/adapters.py`):
- ScanNet (`intrinsic_depth.txt`, written by the .sens calibration) and ARKitScenes (`.pincam`): pixel centres
  on whole numbers (cx = 319.5 for a centred 640-px image): `intrinsics_from_integer_pixel_centres` adds 0.5;
- Matterport3D (`.conf`): image origin at the BOTTOM-left with pixel centres at +0.5 (the GAPS RGBD toolkit that
  wrote the files samples pixel (i, j) at (i + 0.5, j + 0.5), rows counted from the bottom), so only the rows
  flip: `intrinsics_from_bottom_left_origin` gives cy = H - cy (not H - 1 - cy);
- ScanNet++ (COLMAP `cameras.txt`): COLMAP puts the top-left pixel's centre at (0.5, 0.5), already ours;
- Hypersim (`M_proj`, an OpenGL projection over the image's outer edges): ours by construction
  (`camera_from_gl_projection`).
Resizing an image by (sx, sy) scales K in these edge-based coordinates (`scale_intrinsics`); a quarter turn of
the image turns the camera with it (`rotate_camera_clockwise`, ARKitScenes' upright rotation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Diagonal flip between OpenGL/Blender cameras (x right, y up, looking down -z) and OpenCV cameras (its own inverse).
OPENGL_TO_OPENCV_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])
# World rotation that maps a Y-up world (x right, y up, z towards the viewer) onto our Z-up world.
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
ORTHONORMAL_TOLERANCE = 1e-4
# Local corner signs: corner i has sign bits (bit 0 -> x, bit 1 -> y, bit 2 -> z).
_CORNER_SIGNS = np.array([[(i >> axis & 1) * 2 - 1 for axis in range(3)] for i in range(8)], dtype=float)


@dataclass(frozen=True)
class OrientedBox:
    center: np.ndarray  # (3,)
    extents: np.ndarray  # (3,) full side lengths
    rotation: np.ndarray  # (3, 3) columns = local axes in world

    @property
    def volume(self) -> float:
        return float(self.extents[0] * self.extents[1] * self.extents[2])

    def corners(self) -> np.ndarray:
        """(8, 3) corners; corner i has local signs from the bits of i (bit 0 -> x, bit 1 -> y, bit 2 -> z)."""
        return self.center + (_CORNER_SIGNS * (self.extents / 2)) @ self.rotation.T

    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=float) - self.center) @ self.rotation

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        return np.all(np.abs(self.to_local(points)) <= self.extents / 2 + margin, axis=-1)

    def transformed(self, transform: np.ndarray) -> OrientedBox:
        """The box moved by a rigid 4x4 transform (rotation part must be a proper rotation)."""
        rotation = transform[:3, :3]
        return OrientedBox(rotation @ self.center + transform[:3, 3], self.extents.copy(), rotation @ self.rotation)

    def to_json(self) -> dict:
        return {"center": self.center.tolist(), "extents": self.extents.tolist(), "rotation": self.rotation.tolist()}


def rotation_z(yaw: float) -> np.ndarray:
    cos, sin = np.cos(yaw), np.sin(yaw)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def rotation_error(rotation: np.ndarray) -> float:
    """Largest deviation of R^T R from identity, and of det(R) from +1."""
    rotation = np.asarray(rotation, dtype=float)
    return float(max(np.abs(rotation.T @ rotation - np.eye(3)).max(), abs(np.linalg.det(rotation) - 1.0)))


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform (camera-to-world <-> world-to-camera)."""
    inverse = np.eye(4)
    inverse[:3, :3] = pose[:3, :3].T
    inverse[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    return inverse


def pose_from_opengl(camera_to_world_gl: np.ndarray) -> np.ndarray:
    """OpenGL/Blender/Hypersim camera (y up, looking down -z) -> OpenCV camera, same world."""
    return np.asarray(camera_to_world_gl, dtype=float) @ OPENGL_TO_OPENCV_CAMERA


def pose_to_opengl(camera_to_world: np.ndarray) -> np.ndarray:
    """OpenCV camera -> OpenGL/Blender camera, same world (what a Blender camera's matrix_world is)."""
    return np.asarray(camera_to_world, dtype=float) @ OPENGL_TO_OPENCV_CAMERA


def pose_from_world_to_camera(world_to_camera: np.ndarray) -> np.ndarray:
    """Datasets that store extrinsics (world-to-camera) -> our camera-to-world pose."""
    return invert_pose(np.asarray(world_to_camera, dtype=float))


def world_transform_y_up_to_z_up() -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = Y_UP_TO_Z_UP
    return transform


def pose_to_z_up_world(camera_to_world_y_up: np.ndarray) -> np.ndarray:
    """A camera-to-world pose in a Y-up world -> the same camera in our Z-up world."""
    return world_transform_y_up_to_z_up() @ np.asarray(camera_to_world_y_up, dtype=float)


def box_from_half_sizes(center, half_sizes, rotation) -> OrientedBox:
    """Datasets that store half side lengths (Matterport3D radii, many detectors) -> full extents."""
    return OrientedBox(np.asarray(center, float), 2.0 * np.asarray(half_sizes, float), np.asarray(rotation, float))


def box_from_axis_aligned_min_max(minimum, maximum) -> OrientedBox:
    minimum, maximum = np.asarray(minimum, float), np.asarray(maximum, float)
    return OrientedBox((minimum + maximum) / 2, maximum - minimum, np.eye(3))


def box_from_yaw(center, extents, yaw: float) -> OrientedBox:
    """Gravity-aligned box given a heading angle about +Z (radians, counter-clockwise seen from above)."""
    return OrientedBox(np.asarray(center, float), np.asarray(extents, float), rotation_z(yaw))


def yaw_of(rotation: np.ndarray) -> float:
    """Heading (about +Z) of a rotation's local +x axis."""
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


def rotation_from_quaternion_wxyz(qw: float, qx: float, qy: float, qz: float) -> np.ndarray:
    """Unit Hamilton quaternion (scalar first, as COLMAP writes it) -> rotation matrix."""
    norm = np.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w, x, y, z = qw / norm, qx / norm, qy / norm, qz / norm
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def camera_heading(camera_to_world: np.ndarray) -> np.ndarray:
    """Unit (2,) ground-plane direction a camera faces.

    Within 45 degrees of level it is the horizontal part of the optical axis (z). A steeper view uses the
    horizontal part of the image's "up" axis instead (-y looking down, +y looking up): for a camera without roll
    both are the same direction, and the image axis keeps its full length where the optical axis shrinks to
    nothing, so a near-vertical view still has a well-defined heading (straight down: the top of the image)."""
    rotation = np.asarray(camera_to_world, dtype=float)[:3, :3]
    forward, down = rotation[:, 2], rotation[:, 1]
    if abs(forward[2]) <= np.sqrt(0.5):
        direction = forward[:2]
    else:
        direction = -down[:2] if forward[2] < 0 else down[:2]
    return direction / np.linalg.norm(direction)


def gravity_aligned_camera_frame(camera_to_world: np.ndarray) -> np.ndarray:
    """4x4 frame-to-world transform of a camera's gravity-aligned frame: origin at the camera centre, x its
    heading, y to its left, z up (world +Z)."""
    heading = camera_heading(camera_to_world)
    frame = np.eye(4)
    frame[:2, 0] = heading
    frame[:2, 1] = [-heading[1], heading[0]]
    frame[:3, 3] = np.asarray(camera_to_world, dtype=float)[:3, 3]
    return frame


def intrinsics_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_integer_pixel_centres(intrinsics: np.ndarray) -> np.ndarray:
    """K whose pixel centres are whole numbers (ScanNet, ARKitScenes) -> ours (centres at +0.5)."""
    converted = np.array(intrinsics, dtype=float)
    converted[:2, 2] += 0.5
    return converted


def intrinsics_from_bottom_left_origin(intrinsics: np.ndarray, height: int) -> np.ndarray:
    """K with rows counted up from the image's bottom edge (Matterport3D) -> rows down from the top edge."""
    converted = np.array(intrinsics, dtype=float)
    converted[1, 2] = height - converted[1, 2]
    return converted


def scale_intrinsics(intrinsics: np.ndarray, scale_x: float, scale_y: float) -> np.ndarray:
    """K of an image resized by (scale_x, scale_y); edge-based pixel coordinates scale with the image."""
    return np.diag([scale_x, scale_y, 1.0]) @ np.asarray(intrinsics, dtype=float)


def rotate_camera_clockwise(intrinsics: np.ndarray, pose: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(K, camera-to-world pose) of an image of `height` rows turned a quarter clockwise (`np.rot90(image, -1)`):
    pixel (u, v) moves to (height - v, u), so the new camera's x axis is the old -y and its y axis the old x."""
    pixels = np.array([[0.0, -1.0, height], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # old pixel -> new pixel
    new_axes = np.eye(4)
    new_axes[:3, :3] = [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]  # columns: new axes in the old camera
    return pixels @ np.asarray(intrinsics, dtype=float) @ new_axes[:3, :3], np.asarray(pose, dtype=float) @ new_axes


def camera_from_gl_projection(projection: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """An OpenGL-style 4x4 projection (camera looking down -z, y up; NDC x right, y up, both in [-1, 1] over the
    image's outer pixel edges) -> (K, tilt) with `pixel ~ K @ tilt @ p` for a point p in the OpenCV camera.

    A plain perspective projection gives tilt = I and the familiar pinhole K; lens shift moves the principal
    point; tilt-shift (an image plane not perpendicular to the viewing axis, Hypersim's per-scene M_proj) gives a
    rotation `tilt` from the OpenCV camera to a virtual pinhole camera whose K may have a small skew. Raises
    ValueError when the matrix is not a central projection (non-zero translation terms)."""
    projection = np.asarray(projection, dtype=float)
    if np.any(np.abs(projection[[0, 1, 3], 3]) > 1e-9):
        raise ValueError("not a central projection: M[0,3], M[1,3] and M[3,3] must be 0")
    x_row, y_row, w_row = projection[0, :3], projection[1, :3], projection[3, :3]
    # pixel u = (x_ndc + 1) * W / 2 and v = (1 - y_ndc) * H / 2, with ndc = row . p / (w_row . p).
    gl_camera_to_pixels = np.stack([width / 2 * (x_row + w_row), height / 2 * (w_row - y_row), w_row])
    homography = gl_camera_to_pixels @ OPENGL_TO_OPENCV_CAMERA[:3, :3]
    return _pinhole_times_rotation(homography)


def _pinhole_times_rotation(homography: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RQ split of a 3x3 camera matrix into an upper-triangular K (positive diagonal, K[2, 2] = 1) and a rotation."""
    from scipy.linalg import rq

    upper, rotation = rq(homography)
    signs = np.diag(np.sign(np.diag(upper)))
    upper, rotation = upper @ signs, signs @ rotation  # signs @ signs = I
    if np.linalg.det(rotation) < 0:  # points in front have w > 0, so the sign of the whole matrix is fixed
        raise ValueError("projection maps points in front of the camera to a mirrored image")
    return upper / upper[2, 2], rotation


def planar_depth_from_ray_distance(distance: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """Distance from the optical centre along each pixel's ray (Hypersim's depth_meters) -> planar depth z,
    using the ray through each pixel's centre; non-finite distances (no surface) become 0 (unknown)."""
    height, width = distance.shape
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([cols, rows, np.ones_like(cols)], axis=-1) @ np.linalg.inv(intrinsics).T
    depth = distance / np.linalg.norm(rays, axis=-1)  # each ray has z = 1, so its length is distance / depth
    return np.where(np.isfinite(depth) & (depth > 0), depth, 0.0)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points moved by a 4x4 rigid (or affine) transform."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def project_points(points_world: np.ndarray, intrinsics: np.ndarray,
                   cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and camera-space depth (N,) of world points."""
    world_to_cam = np.linalg.inv(cam_to_world)
    points_cam = transform_points(world_to_cam, np.asarray(points_world, dtype=float))
    depth = points_cam[:, 2]
    uv = points_cam @ intrinsics.T
    with np.errstate(divide="ignore", invalid="ignore"):
        pixels = uv[:, :2] / uv[:, 2:3]
    return pixels, depth


def pixel_rays(pixels: np.ndarray, intrinsics: np.ndarray, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-space origin (3,) and unit directions (N, 3) of the rays through pixel coordinates (N, 2)."""
    homogeneous = np.concatenate([pixels, np.ones((len(pixels), 1))], axis=1)
    directions_cam = homogeneous @ np.linalg.inv(intrinsics).T
    directions = directions_cam @ np.asarray(cam_to_world)[:3, :3].T
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return np.asarray(cam_to_world)[:3, 3].copy(), directions
