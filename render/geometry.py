"""Scene-building maths of render/, shared by the main environment and the render workers (numpy only):
object transforms (Blender's XYZ Euler), look-at and orbit cameras, named views around an object, and the
intrinsics <-> Blender lens/shift mapping.

Coordinate conventions, the OpenCV <-> Blender (OpenGL) camera flip and pinhole projection are owned by
`data_engine.conventions`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BLENDER_SENSOR_WIDTH_MM = 36.0


def euler_xyz_to_matrix(angles: Sequence[float]) -> np.ndarray:
    """Rotation matrix of XYZ Euler angles (radians), applied x first: R = Rz @ Ry @ Rx (Blender's 'XYZ')."""
    ax, ay, az = angles
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def trs_matrix(location: Sequence[float], rotation_euler: Sequence[float] = (0, 0, 0),
               scale: Sequence[float] = (1, 1, 1)) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, :3] = euler_xyz_to_matrix(rotation_euler) @ np.diag(scale)
    matrix[:3, 3] = location
    return matrix


def look_at_pose(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0, 0, 1)) -> np.ndarray:
    """OpenCV camera-to-world pose at `eye` whose optical axis (+z) points at `target`, image up along `up`."""
    eye_v, target_v, up_v = (np.asarray(v, dtype=float) for v in (eye, target, up))
    forward = target_v - eye_v
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up_v)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any right vector will do
        right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye_v
    return pose


def orbit_eye(target: Sequence[float], azimuth_deg: float, elevation_deg: float, distance: float) -> np.ndarray:
    """Camera position on a sphere around `target`. Azimuth 0 is the object's front (-y), increasing
    counter-clockwise seen from above (towards +x, the object's right side from its own point of view is -x)."""
    azimuth, elevation = math.radians(azimuth_deg), math.radians(elevation_deg)
    direction = np.array([math.sin(azimuth) * math.cos(elevation), -math.cos(azimuth) * math.cos(elevation),
                          math.sin(elevation)])
    return np.asarray(target, dtype=float) + distance * direction


def focal_from_fov(size_px: int, fov_deg: float) -> float:
    return size_px / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


def fov_from_focal(size_px: int, focal_px: float) -> float:
    return math.degrees(2.0 * math.atan(size_px / 2.0 / focal_px))


def blender_camera_parameters(width: int, height: int, fx: float, cx: float, cy: float) -> dict[str, float]:
    """Lens (mm, horizontal sensor fit) and shifts giving the same projection as the OpenCV intrinsics.

    Blender's unshifted optical axis meets the image at its geometric centre, which is pixel coordinate
    ((w - 1) / 2, (h - 1) / 2) when pixel centres are integers; shifts are in units of the image width.
    """
    return {
        "sensor_width": BLENDER_SENSOR_WIDTH_MM,
        "lens": fx * BLENDER_SENSOR_WIDTH_MM / width,
        "shift_x": ((width - 1) / 2.0 - cx) / width,
        "shift_y": (cy - (height - 1) / 2.0) / width,
    }


def yaw_of_camera(eye: Sequence[float], target: Sequence[float]) -> float:
    """Azimuth in degrees [0, 360) of a camera position around `target` (inverse of `orbit_eye`)."""
    offset = np.asarray(eye, dtype=float) - np.asarray(target, dtype=float)
    return math.degrees(math.atan2(offset[0], -offset[1])) % 360.0


# The eight named views, by the camera's azimuth around the object (0 = looking at its front). The object
# faces -y with its own left side towards +x, so a camera at azimuth 90 sees the object's left side.
NAMED_VIEWS: dict[str, float] = {"front": 0.0, "front-left": 45.0, "left": 90.0, "rear-left": 135.0,
                                 "rear": 180.0, "rear-right": 225.0, "right": 270.0, "front-right": 315.0}


def named_view(azimuth_deg: float) -> str:
    """The named view closest to a camera azimuth (degrees)."""
    def gap(name: str) -> float:
        difference = (azimuth_deg - NAMED_VIEWS[name]) % 360.0
        return min(difference, 360.0 - difference)
    return min(NAMED_VIEWS, key=gap)


def signed_angle_deg(from_deg: float, to_deg: float) -> float:
    """Smallest signed rotation from one azimuth to another, in (-180, 180]."""
    difference = (to_deg - from_deg) % 360.0
    return difference - 360.0 if difference > 180.0 else difference
