"""A procedural LiDAR simulator: a spinning 64-beam sensor ray-cast against street scenes.

The sensor follows the Velodyne HDL-64E of KITTI: 64 beams evenly spread from
+2.0 to -24.8 degrees elevation, mounted 1.73 m above the ground, ``columns``
azimuth steps per revolution (2083 on the real sensor at 10 Hz; fewer for CPU
runs), returns up to ``max_range`` metres, Gaussian range noise and random
dropout of returns. Every ray is intersected with every primitive of the scene
(vectorised over rays) and keeps the nearest hit.

A scene is a straight street along x: road, sidewalks, terrain beyond; rows of
buildings (boxes) behind the sidewalks; cars and trucks (boxes) on the lanes and
parked at the kerb; pedestrians (cylinders of 0.25-0.35 m radius) and cyclists
(a bicycle box with a rider cylinder) on the sidewalks and the road edge; poles
(thin cylinders) and traffic signs along the kerb; trees (a trunk cylinder under
a crown sphere) and bushes. Scenes are drawn from a seeded generator, so a
(seed, index) pair always gives the same scan. Labels are SemanticKITTI raw ids,
with an instance id per object, so scans can be written in SemanticKITTI's format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

__all__ = ["SensorConfig", "SceneConfig", "Primitive", "make_scene", "cast_scan", "simulate_scan", "RAW"]

#: the raw SemanticKITTI ids the simulator emits
RAW = {
    "unlabeled": 0, "car": 10, "truck": 18, "person": 30, "bicyclist": 31, "road": 40, "sidewalk": 48,
    "building": 50, "vegetation": 70, "trunk": 71, "terrain": 72, "pole": 80, "traffic-sign": 81,
}

#: surface reflectivity per class (remission is this, attenuated with range and incidence, plus noise)
_REFLECTIVITY = {10: 0.35, 18: 0.30, 30: 0.25, 31: 0.30, 40: 0.18, 48: 0.30, 50: 0.40, 70: 0.45, 71: 0.30, 72: 0.35, 80: 0.55, 81: 0.85}


@dataclass
class SensorConfig:
    beams: int = 64
    columns: int = 1024
    fov_up_deg: float = 2.0
    fov_down_deg: float = -24.8
    height_m: float = 1.73
    max_range_m: float = 70.0
    min_range_m: float = 2.5
    range_noise_m: float = 0.02
    dropout: float = 0.05


@dataclass
class SceneConfig:
    road_half_width_m: float = 7.0
    sidewalk_width_m: float = 3.5
    extent_m: float = 70.0
    cars: Tuple[int, int] = (6, 14)
    trucks: Tuple[int, int] = (0, 2)
    pedestrians: Tuple[int, int] = (8, 16)
    cyclists: Tuple[int, int] = (3, 6)
    poles: Tuple[int, int] = (8, 14)
    signs: Tuple[int, int] = (2, 5)
    trees: Tuple[int, int] = (6, 12)


@dataclass
class Primitive:
    """One solid: ``kind`` box (centre, half sizes, yaw), cylinder (centre xy, radius,
    z range) or sphere (centre, radius)."""

    kind: str
    label: int
    instance: int
    centre: np.ndarray
    size: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw: float = 0.0


def _n(rng: np.random.Generator, lo_hi: Tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def make_scene(rng: np.random.Generator, cfg: Optional[SceneConfig] = None) -> List[Primitive]:
    """Draw a street scene (the ground is implicit: road, sidewalk, terrain bands)."""
    cfg = cfg or SceneConfig()
    prims: List[Primitive] = []
    inst = iter(range(1, 1 << 16))
    R, S, E = cfg.road_half_width_m, cfg.sidewalk_width_m, cfg.extent_m

    def box(label, cx, cy, cz, hx, hy, hz, yaw=0.0):
        prims.append(Primitive("box", label, next(inst), np.array([cx, cy, cz]), np.array([hx, hy, hz]), yaw))

    def cyl(label, cx, cy, r, z0, z1, instance=None):
        prims.append(Primitive("cylinder", label, instance or next(inst), np.array([cx, cy, (z0 + z1) / 2]), np.array([r, r, (z1 - z0) / 2])))

    # buildings: rows of blocks behind each sidewalk, with gaps
    for side in (-1, 1):
        x = -E
        while x < E:
            length = rng.uniform(8, 25)
            if rng.random() < 0.8:
                depth = rng.uniform(8, 15)
                setback = R + S + rng.uniform(1.0, 6.0)
                box(RAW["building"], x + length / 2, side * (setback + depth / 2), rng.uniform(4, 10), length / 2, depth / 2, rng.uniform(4, 10))
            x += length + rng.uniform(2, 10)
    # vehicles
    for _ in range(_n(rng, cfg.cars)):
        parked = rng.random() < 0.5
        y = (R - 1.2) * rng.choice([-1, 1]) if parked else rng.uniform(-R + 2.5, R - 2.5)
        yaw = rng.normal(0, 0.05) + (np.pi if rng.random() < 0.5 else 0.0)
        box(RAW["car"], rng.uniform(-E + 5, E - 5), y, 0.75, rng.uniform(1.9, 2.3), rng.uniform(0.85, 0.95), 0.75, yaw)
    for _ in range(_n(rng, cfg.trucks)):
        box(RAW["truck"], rng.uniform(-E + 8, E - 8), rng.uniform(-R + 2.5, R - 2.5), 1.6, rng.uniform(3.5, 6), 1.25, 1.6, rng.normal(0, 0.03))
    # pedestrians on the sidewalks (and some crossing)
    for _ in range(_n(rng, cfg.pedestrians)):
        on_road = rng.random() < 0.15
        y = rng.uniform(-R, R) if on_road else rng.choice([-1, 1]) * (R + rng.uniform(0.5, S - 0.3))
        h = rng.uniform(1.55, 1.9)
        cyl(RAW["person"], rng.uniform(-E + 3, E - 3), y, rng.uniform(0.22, 0.32), 0.0, h)
    # cyclists: bicycle box and rider cylinder, one instance
    for _ in range(_n(rng, cfg.cyclists)):
        x, y = rng.uniform(-E + 3, E - 3), rng.choice([-1, 1]) * rng.uniform(R - 2.0, R - 0.5)
        yaw = rng.normal(0, 0.1)
        i = next(inst)
        prims.append(Primitive("box", RAW["bicyclist"], i, np.array([x, y, 0.5]), np.array([0.85, 0.25, 0.5]), yaw))
        cyl(RAW["bicyclist"], x, y, 0.25, 0.9, 1.75, instance=i)
    # poles and signs at the kerb
    for _ in range(_n(rng, cfg.poles)):
        cyl(RAW["pole"], rng.uniform(-E, E), rng.choice([-1, 1]) * (R + rng.uniform(0.2, 0.6)), rng.uniform(0.06, 0.15), 0.0, rng.uniform(3.5, 8.0))
    for _ in range(_n(rng, cfg.signs)):
        x, y = rng.uniform(-E, E), rng.choice([-1, 1]) * (R + rng.uniform(0.2, 0.6))
        cyl(RAW["pole"], x, y, 0.05, 0.0, 2.2)
        box(RAW["traffic-sign"], x, y, 2.6, 0.05, 0.4, 0.4, rng.uniform(-0.3, 0.3))
    # trees on the far side of the sidewalk
    for _ in range(_n(rng, cfg.trees)):
        x, y = rng.uniform(-E, E), rng.choice([-1, 1]) * (R + S + rng.uniform(0.3, 2.5))
        h = rng.uniform(2.0, 3.5)
        cyl(RAW["trunk"], x, y, rng.uniform(0.12, 0.25), 0.0, h + 0.5)
        r = rng.uniform(1.5, 3.0)
        prims.append(Primitive("sphere", RAW["vegetation"], next(inst), np.array([x, y, h + r * 0.8]), np.array([r, r, r])))
    return prims


def _hit_box(o: np.ndarray, d: np.ndarray, p: Primitive) -> np.ndarray:
    c, s = np.cos(-p.yaw), np.sin(-p.yaw)
    rel = o - p.centre
    ol = np.stack([c * rel[..., 0] - s * rel[..., 1], s * rel[..., 0] + c * rel[..., 1], rel[..., 2]], -1)
    dl = np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1], d[:, 2]], -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / dl
        t1 = (-p.size - ol) * inv
        t2 = (p.size - ol) * inv
    tmin = np.nanmax(np.minimum(t1, t2), axis=1)
    tmax = np.nanmin(np.maximum(t1, t2), axis=1)
    hit = (tmax >= tmin) & (tmax > 0)
    return np.where(hit, np.where(tmin > 0, tmin, np.inf), np.inf)


def _hit_cylinder(o: np.ndarray, d: np.ndarray, p: Primitive) -> np.ndarray:
    r = p.size[0]
    ox, oy = o[0] - p.centre[0], o[1] - p.centre[1]
    a = d[:, 0] ** 2 + d[:, 1] ** 2
    b = 2 * (ox * d[:, 0] + oy * d[:, 1])
    cc = ox ** 2 + oy ** 2 - r ** 2
    disc = b * b - 4 * a * cc
    ok = (disc >= 0) & (a > 1e-12)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (-b - sq) / (2 * a)
    z = o[2] + t * d[:, 2]
    ok &= (t > 0) & (z >= p.centre[2] - p.size[2]) & (z <= p.centre[2] + p.size[2])
    return np.where(ok, t, np.inf)


def _hit_sphere(o: np.ndarray, d: np.ndarray, p: Primitive) -> np.ndarray:
    rel = o - p.centre
    b = 2 * (d @ rel)
    cc = rel @ rel - p.size[0] ** 2
    disc = b * b - 4 * cc
    ok = disc >= 0
    t = (-b - np.sqrt(np.where(ok, disc, 0.0))) / 2
    return np.where(ok & (t > 0), t, np.inf)


_HIT = {"box": _hit_box, "cylinder": _hit_cylinder, "sphere": _hit_sphere}


def cast_scan(prims: List[Primitive], rng: np.random.Generator, sensor: Optional[SensorConfig] = None, scene: Optional[SceneConfig] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast one revolution. Returns points ``[N, 4]`` float32 (x, y, z, remission)
    in the sensor frame, raw semantic ids ``[N]`` and instance ids ``[N]``."""
    sensor = sensor or SensorConfig()
    scene = scene or SceneConfig()
    elev = np.deg2rad(np.linspace(sensor.fov_up_deg, sensor.fov_down_deg, sensor.beams))
    azim = np.linspace(-np.pi, np.pi, sensor.columns, endpoint=False) + rng.uniform(0, 2 * np.pi / sensor.columns)
    el, az = np.meshgrid(elev, azim, indexing="ij")
    d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1).reshape(-1, 3)
    o = np.array([0.0, 0.0, sensor.height_m])
    n = d.shape[0]
    best = np.full(n, np.inf)
    label = np.zeros(n, dtype=np.int64)
    instance = np.zeros(n, dtype=np.int64)
    # the ground plane z = 0, labelled by band across the street
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(d[:, 2] < -1e-6, -o[2] / d[:, 2], np.inf)
    best = tg
    gy = np.abs(o[1] + tg * d[:, 1])
    ground = np.where(gy <= scene.road_half_width_m, RAW["road"], np.where(gy <= scene.road_half_width_m + scene.sidewalk_width_m, RAW["sidewalk"], RAW["terrain"]))
    label[:] = np.where(np.isfinite(tg), ground, 0)
    for p in prims:
        t = _HIT[p.kind](o, d, p)
        closer = t < best
        best = np.where(closer, t, best)
        label = np.where(closer, p.label, label)
        instance = np.where(closer, p.instance, instance)
    keep = np.isfinite(best) & (best <= sensor.max_range_m) & (best >= sensor.min_range_m)
    keep &= rng.random(n) >= sensor.dropout
    rng_m = best[keep] + rng.normal(0, sensor.range_noise_m, int(keep.sum()))
    dirs = d[keep]
    xyz = o + dirs * rng_m[:, None]
    xyz[:, 2] -= sensor.height_m  # the sensor frame: origin at the sensor, as KITTI's velodyne frame
    lab = label[keep]
    refl = np.vectorize(lambda c: _REFLECTIVITY.get(int(c), 0.3))(lab) if lab.size else np.zeros(0)
    remission = np.clip(refl * (1.0 - 0.4 * rng_m / sensor.max_range_m) + rng.normal(0, 0.03, lab.size), 0.0, 1.0)
    pts = np.concatenate([xyz, remission[:, None]], 1).astype(np.float32)
    return pts, lab, instance[keep]


def simulate_scan(seed: int, index: int, sensor: Optional[SensorConfig] = None, scene: Optional[SceneConfig] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scan ``index`` of the procedural set ``seed`` (a new scene each)."""
    rng = np.random.default_rng([int(seed), int(index)])
    prims = make_scene(rng, scene)
    return cast_scan(prims, rng, sensor, scene)
