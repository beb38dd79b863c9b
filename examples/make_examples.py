#!/usr/bin/env python
"""Generate spacemind's bundled example data set (``examples/``).

Renders 4 small synthetic indoor scenes (an axis-aligned room holding coloured boxes that stand
for furniture, seen by a camera that circles the room centre and sweeps its view through 360°)
with a tiny numpy ray caster, and writes for each scene:

* ``videos/synthetic/<scene>.mp4``     H.264 (libx264, yuv420p, 12 fps; mpeg4 if x264 is missing)
* ``frames/synthetic/<scene>/<n>.jpg`` JPEG q85, named 0.jpg, 1.jpg, ... 47.jpg (no zero padding,
                                       so readers have to natural-sort)

plus, for all scenes together:

* ``scenes.json``     the ground-truth geometry: room size, every object's class, colour, centre
                      and size, the intrinsics and the per-frame camera-to-world poses (OpenCV
                      convention), and each object's first visible frame
* ``questions.jsonl`` VSI-Bench-format questions (all 10 question types) whose ground truths are
                      computed from that geometry
* ``annotate.jsonl``  free-text question templates for annotation jobs (no scene, no ground truth)

Deterministic: fixed seeds and geometry rounded to centimetres before it is used, so the JSON/JSONL
files and the JPEGs come out byte-identical on every run; the mp4 bytes may differ slightly from run
to run (libx264), their decoded frames do not differ visibly. Only numpy, pillow and av are needed.

World frame: metres, z up, the room spans [0, L] x [0, W] x [0, H] (x along the room's length).
Camera frame (OpenCV): x right, y down, z forward; ``c2w`` maps camera to world coordinates.

Usage::

    python examples/make_examples.py                 # regenerate everything in examples/
    python examples/make_examples.py --out /tmp/ex   # somewhere else
    python examples/make_examples.py --no-media      # only the JSON/JSONL files (still renders)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

DATASET = "synthetic"
NUM_FRAMES = 48
FPS = 12
JPEG_QUALITY = 85
X264_CRF = 23
SUPERSAMPLE = 2  # rays per pixel along each axis (anti-aliasing)
FOCAL = 230.0  # pixels, fx == fy, for every scene (320 px wide -> ~70° horizontal FOV)
CAM_HEIGHT = 1.5
CAM_PITCH_DEG = 18.0  # looking down
VISIBLE_FRACTION = 0.004  # an object "appears" once it covers >= 0.4 % of the image
SWEEP = 0.95  # fraction of a full turn swept over the video

# Named colours (sRGB 0-255) for the objects; none of them is close to the room's colours.
PALETTE = {
    "red": (200, 40, 40),
    "blue": (45, 75, 205),
    "green": (45, 160, 65),
    "yellow": (230, 200, 40),
    "orange": (240, 130, 30),
    "purple": (130, 55, 170),
    "pink": (240, 125, 175),
    "teal": (30, 160, 160),
    "black": (40, 40, 45),
}

# Per class: size ranges (length along its long side, depth, height) in metres, whether it stands
# against a wall, and the height of its base above the floor (a tv hangs on the wall).
CLASSES = {
    "chair": {"size": ((0.42, 0.55), (0.42, 0.55), (0.80, 1.00)), "wall": False, "base": (0.0, 0.0)},
    "table": {"size": ((1.20, 1.70), (0.70, 0.90), (0.72, 0.78)), "wall": False, "base": (0.0, 0.0)},
    "sofa": {"size": ((1.80, 2.20), (0.85, 0.95), (0.80, 0.90)), "wall": True, "base": (0.0, 0.0)},
    "lamp": {"size": ((0.30, 0.40), (0.30, 0.40), (1.40, 1.70)), "wall": False, "base": (0.0, 0.0)},
    "bed": {"size": ((1.95, 2.10), (1.40, 1.60), (0.50, 0.60)), "wall": True, "base": (0.0, 0.0)},
    "tv": {"size": ((1.00, 1.30), (0.08, 0.12), (0.60, 0.75)), "wall": True, "base": (0.80, 1.00)},
    "plant": {"size": ((0.35, 0.45), (0.35, 0.45), (0.90, 1.20)), "wall": False, "base": (0.0, 0.0)},
    "cabinet": {"size": ((0.80, 1.00), (0.42, 0.50), (1.60, 1.90)), "wall": True, "base": (0.0, 0.0)},
}

# The four scenes: room size (L, W, H), image size (width, height), the classes to place (a class
# listed twice gets two instances), the layout seed, the camera circle's radius and start angle.
SCENES = [
    {"name": "room_0000", "room": (5.0, 4.0, 2.7), "image": (320, 240), "seed": 11,
     "objects": ["chair", "chair", "table", "sofa", "lamp", "tv"], "cam_radius": 0.6, "start_deg": 45.0},
    {"name": "room_0001", "room": (6.0, 4.5, 2.8), "image": (320, 240), "seed": 22,
     "objects": ["bed", "cabinet", "cabinet", "lamp", "plant", "chair"], "cam_radius": 0.7, "start_deg": 45.0},
    {"name": "room_0002", "room": (4.5, 4.0, 2.6), "image": (240, 320), "seed": 33,
     "objects": ["sofa", "table", "chair", "chair", "chair", "plant", "lamp"], "cam_radius": 0.5, "start_deg": 240.0},
    {"name": "room_0003", "room": (7.0, 5.0, 2.8), "image": (320, 240), "seed": 44,
     "objects": ["table", "chair", "chair", "tv", "cabinet", "plant", "plant"], "cam_radius": 0.8, "start_deg": 30.0},
]

# Room surfaces (sRGB): floor (two tile shades), walls x=0, x=L, y=0, y=W, ceiling.
FLOOR_RGB = ((158, 124, 92), (140, 108, 80))
FLOOR_TILE = 0.5
WALL_RGB = ((206, 200, 186), (186, 198, 206), (200, 192, 206), (212, 206, 182))
CEILING_RGB = (236, 236, 232)
LIGHT_DIR = np.array([0.45, 0.30, 0.84]) / np.linalg.norm([0.45, 0.30, 0.84])  # towards the light
AMBIENT = 0.45
EXPOSURE = 1.15

# VSI-Bench question templates (released wording).
T_COUNT = "How many {cat}(s) are in this room?"
T_ABS_DIST = ("Measuring from the closest point of each object, what is the direct distance between "
              "the {a} and the {b} (in meters)?")
T_SIZE = ("What is the length of the longest dimension (length, width, or height) of the {a}, "
          "measured in centimeters?")
T_ROOM = ("What is the size of this room (in square meters)? "
          "If multiple rooms are shown, estimate the size of the combined space.")
T_REL_DIST = ("Measuring from the closest point of each object, which of these objects ({choices}) "
              "is the closest to the {a}? If there are multiple instances of an object category, "
              "measure to the closest.")
T_DIR_EASY = ("If I am standing by the {a} and facing the {b}, is the {c} to the left or the right "
              "of the {b}?")
T_DIR_MEDIUM = ("If I am standing by the {a} and facing the {b}, is the {c} to my left, right, or "
                "back? An object is to my back if I would have to turn at least 135 degrees in "
                "order to face it.")
T_DIR_HARD = ("If I am standing by the {a} and facing the {b}, is the {c} to my front-left, "
              "front-right, back-left, or back-right? The directions refer to the quadrants of a "
              "Cartesian plane (if I am standing at the origin and facing along the positive "
              "y-axis).")
T_ROUTE = ("You are a robot beginning at the {a} facing the {b}. You want to navigate to the {d}. "
           "You will perform the following actions (Note: for each [please fill in], choose either "
           "'turn back,' 'turn left,' or 'turn right.'): 1. Go forward until the {b} "
           "2. [please fill in] 3. Go forward until the {c} 4. [please fill in] "
           "5. Go forward until the {d}. You have reached the final destination.")
T_ROUTE_1 = ("You are a robot beginning at the {a} facing the {b}. You want to navigate to the {d}. "
             "You will perform the following actions (Note: for each [please fill in], choose "
             "either 'turn back,' 'turn left,' or 'turn right.'): 1. Go forward until the {b} "
             "2. [please fill in] 3. Go forward until the {d}. You have reached the final "
             "destination.")
T_APPEAR = ("What will be the first-time appearance order of the following categories in the "
            "video: {choices}?")

QUESTION_TYPES = [
    "object_counting", "object_abs_distance", "object_size_estimation", "room_size_estimation",
    "object_rel_distance", "object_rel_direction_easy", "object_rel_direction_medium",
    "object_rel_direction_hard", "route_planning", "obj_appearance_order",
]

# Free-text templates for annotation jobs: asked as written, no ground truth.
ANNOTATE = [
    {"question_type": "caption", "question": "Describe this room in one or two sentences: its size, "
     "its furniture and where the pieces stand."},
    {"question_type": "largest_object_colour", "question": "What colour is the largest object?"},
    {"question_type": "object_inventory", "question": "List every kind of object you can see in "
     "this room and how many of each there are."},
]


# ----------------------------------------------------------------------------------- geometry ---

def r2(x: float) -> float:
    """Round to centimetres (and normalise -0.0)."""
    return round(float(x), 2) + 0.0


def box_distance(a: dict, b: dict) -> float:
    """Closest-point distance between two axis-aligned boxes (0 when they touch or overlap)."""
    gap = [max(0.0, abs(a["center"][i] - b["center"][i]) - (a["size"][i] + b["size"][i]) / 2)
           for i in range(3)]
    return math.sqrt(sum(g * g for g in gap))


def signed_angle(f: np.ndarray, v: np.ndarray) -> float:
    """Top-down angle (degrees) from direction f to direction v; positive = counter-clockwise =
    to the left (the world is z-up, so looking down on the x-y plane)."""
    cross = f[0] * v[1] - f[1] * v[0]
    dot = f[0] * v[0] + f[1] * v[1]
    return math.degrees(math.atan2(cross, dot))


def xy(obj: dict) -> np.ndarray:
    return np.array(obj["center"][:2], dtype=float)


def place_objects(spec: dict) -> list[dict]:
    """Random non-overlapping layout; boxes stay clear of the camera's circle."""
    rng = np.random.default_rng(spec["seed"])
    L, W, _ = spec["room"]
    cx, cy = L / 2, W / 2
    keep_out = spec["cam_radius"] + 0.45
    colours = list(rng.permutation(list(PALETTE)))
    placed: list[dict] = []
    # place big wall-standing pieces first, they are the hardest to fit
    order = sorted(range(len(spec["objects"])),
                   key=lambda i: (not CLASSES[spec["objects"][i]]["wall"],
                                  -CLASSES[spec["objects"][i]]["size"][0][1], i))
    boxes: dict[int, dict] = {}
    for idx in order:
        cls = spec["objects"][idx]
        c = CLASSES[cls]
        for _attempt in range(5000):
            length, depth, height = (r2(rng.uniform(lo, hi)) for lo, hi in c["size"])
            base = r2(rng.uniform(*c["base"]))
            if c["wall"]:
                wall = int(rng.integers(4))  # 0: x=0, 1: x=L, 2: y=0, 3: y=W
                if wall < 2:
                    sx, sy = depth, length
                    x = 0.03 + sx / 2 if wall == 0 else L - 0.03 - sx / 2
                    y = rng.uniform(sy / 2 + 0.05, W - sy / 2 - 0.05)
                else:
                    sx, sy = length, depth
                    y = 0.03 + sy / 2 if wall == 2 else W - 0.03 - sy / 2
                    x = rng.uniform(sx / 2 + 0.05, L - sx / 2 - 0.05)
            else:
                sx, sy = (length, depth) if rng.random() < 0.5 else (depth, length)
                x = rng.uniform(sx / 2 + 0.15, L - sx / 2 - 0.15)
                y = rng.uniform(sy / 2 + 0.15, W - sy / 2 - 0.15)
            x, y = r2(x), r2(y)
            # nearest footprint point to the room centre must be outside the camera keep-out disc
            nx = min(max(cx, x - sx / 2), x + sx / 2)
            ny = min(max(cy, y - sy / 2), y + sy / 2)
            if math.hypot(nx - cx, ny - cy) < keep_out:
                continue
            cand = {"center": [x, y, r2(base + height / 2)], "size": [sx, sy, height]}
            flat = {"center": [x, y, 0.0], "size": [sx, sy, 0.0]}
            if any(box_distance(flat, {"center": [o["center"][0], o["center"][1], 0.0],
                                       "size": [o["size"][0], o["size"][1], 0.0]}) < 0.3
                   for o in placed):
                continue
            placed.append(cand)
            boxes[idx] = cand
            break
        else:
            raise RuntimeError(f"{spec['name']}: could not place {cls}")
    objects = []
    for idx, cls in enumerate(spec["objects"]):
        colour = str(colours[idx])
        b = boxes[idx]
        objects.append({
            "id": idx, "class": cls, "colour": colour, "rgb": list(PALETTE[colour]),
            "center": [r2(v) for v in b["center"]], "size": [r2(v) for v in b["size"]],
        })
    return objects


def camera_path(spec: dict) -> tuple[np.ndarray, list[list[list[float]]]]:
    """Intrinsics and per-frame camera-to-world 4x4 poses (OpenCV camera axes), rounded to 1e-6."""
    L, W, _ = spec["room"]
    w, h = spec["image"]
    K = np.array([[FOCAL, 0, w / 2], [0, FOCAL, h / 2], [0, 0, 1.0]])
    centre = np.array([L / 2, W / 2])
    pitch = math.radians(CAM_PITCH_DEG)
    poses = []
    for i in range(NUM_FRAMES):
        theta = math.radians(spec["start_deg"]) + 2 * math.pi * SWEEP * i / NUM_FRAMES
        u = np.array([math.cos(theta), math.sin(theta)])
        pos = np.array([*(centre + spec["cam_radius"] * u),
                        CAM_HEIGHT + 0.04 * math.sin(2 * math.pi * i / 16)])  # a little bob
        fwd = np.array([-u[0] * math.cos(pitch), -u[1] * math.cos(pitch), -math.sin(pitch)])
        right = np.cross(fwd, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(fwd, right)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, fwd, pos
        poses.append([[round(float(v), 6) + 0.0 for v in row] for row in c2w])
    return K, poses


# ---------------------------------------------------------------------------------- rendering ---

def srgb_to_linear(c):
    c = np.asarray(c, dtype=np.float64) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb8(c: np.ndarray) -> np.ndarray:
    c = np.clip(c, 0.0, 1.0)
    s = np.where(c <= 0.0031308, c * 12.92, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.clip(np.rint(s * 255.0), 0, 255).astype(np.uint8)


class Renderer:
    """Ray caster for one scene: the room's inside faces plus axis-aligned boxes, Lambert shading."""

    def __init__(self, spec: dict, objects: list[dict], K: np.ndarray):
        self.L, self.W, self.H = spec["room"]
        self.w, self.h = spec["image"]
        s = SUPERSAMPLE
        u = (np.arange(self.w * s) + 0.5) / s
        v = (np.arange(self.h * s) + 0.5) / s
        uu, vv = np.meshgrid(u, v)
        self.rays_cam = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1],
                                  np.ones_like(uu)])  # (3, h*s, w*s)
        self.bmin = np.array([[o["center"][i] - o["size"][i] / 2 for i in range(3)] for o in objects])
        self.bmax = np.array([[o["center"][i] + o["size"][i] / 2 for i in range(3)] for o in objects])
        self.obj_lin = srgb_to_linear([o["rgb"] for o in objects])
        self.floor_lin = srgb_to_linear(FLOOR_RGB)
        self.wall_lin = srgb_to_linear(WALL_RGB)
        self.ceil_lin = srgb_to_linear(CEILING_RGB)
        self.n_obj = len(objects)

    def render(self, c2w) -> tuple[np.ndarray, np.ndarray]:
        """-> (uint8 image h x w x 3, visible pixel count per object at output resolution)."""
        c2w = np.asarray(c2w, dtype=np.float64)
        R, o = c2w[:3, :3], c2w[:3, 3]
        s = SUPERSAMPLE
        hs, ws = self.h * s, self.w * s
        # ray directions as three (hs, ws) planes, one per world axis
        d = np.einsum("ij,jhw->ihw", R, self.rays_cam)
        d = np.where(np.abs(d) < 1e-12, 1e-12, d)
        inv = 1.0 / d
        # room (we are inside it): the ray leaves through the face it is heading for
        room_size = (self.L, self.W, self.H)
        texit = [np.where(d[a] > 0, room_size[a] - o[a], -o[a]) * inv[a] for a in range(3)]
        depth = np.minimum(np.minimum(texit[0], texit[1]), texit[2])
        axis = np.where(texit[0] <= np.minimum(texit[1], texit[2]), 0, np.where(texit[1] <= texit[2], 1, 2))
        hit_id = np.full((hs, ws), -1, dtype=np.int64)
        for k in range(self.n_obj):
            rect = self._screen_rect(k, R, o)
            if rect is None:
                continue
            r0, r1, c0, c1 = rect
            sl = (slice(r0, r1), slice(c0, c1))
            tn = tf = None
            tmins = []
            for a in range(3):
                i = inv[a][sl]
                t1 = (self.bmin[k, a] - o[a]) * i
                t2 = (self.bmax[k, a] - o[a]) * i
                lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
                tmins.append(lo)
                tn = lo if tn is None else np.maximum(tn, lo)
                tf = hi if tf is None else np.minimum(tf, hi)
            hit = (tn <= tf) & (tn > 1e-6) & (tn < depth[sl])
            face = np.where(tmins[0] >= np.maximum(tmins[1], tmins[2]), 0,
                            np.where(tmins[1] >= tmins[2], 1, 2))
            depth[sl] = np.where(hit, tn, depth[sl])
            axis[sl] = np.where(hit, face, axis[sl])
            hit_id[sl] = np.where(hit, k, hit_id[sl])
        d, depth, axis, hit_id = d.reshape(3, -1), depth.reshape(-1), axis.reshape(-1), hit_id.reshape(-1)
        n = depth.shape[0]
        sign = np.sign(np.choose(axis, d))
        # boxes: the face hit faces the ray's origin; room: the inside face also faces it
        lambert = np.clip(-sign * LIGHT_DIR[axis], 0.0, 1.0)
        colour = np.empty((n, 3))
        is_obj = hit_id >= 0
        colour[is_obj] = self.obj_lin[hit_id[is_obj]]
        px = o[0] + d[0] * depth
        py = o[1] + d[1] * depth
        pz = o[2] + d[2] * depth
        room = ~is_obj
        floor = room & (axis == 2) & (sign < 0)
        ceil = room & (axis == 2) & (sign > 0)
        tile = ((np.floor(px / FLOOR_TILE) + np.floor(py / FLOOR_TILE)) % 2).astype(np.int64)
        colour[floor] = self.floor_lin[tile[floor]]
        colour[ceil] = self.ceil_lin
        walls = room & (axis < 2)
        wall_idx = 2 * axis + (sign > 0)
        colour[walls] = self.wall_lin[wall_idx[walls]]
        shade = AMBIENT + (1 - AMBIENT) * lambert
        # walls darken a little towards the floor, so corners read better
        shade = np.where(walls, shade * (0.85 + 0.15 * np.clip(pz, 0, 1)), shade)
        lin = (colour * (EXPOSURE * shade)[:, None]).reshape(self.h, s, self.w, s, 3).mean((1, 3))
        img = linear_to_srgb8(lin)
        counts = np.bincount(hit_id[is_obj], minlength=self.n_obj) / (s * s)
        return img, counts

    def _screen_rect(self, k: int, R: np.ndarray, o: np.ndarray):
        """Supersampled pixel rectangle holding box k's projection, None if it is behind us."""
        corners = np.array(list(itertools.product(*zip(self.bmin[k], self.bmax[k]))))
        pc = (corners - o) @ R  # world -> camera
        s = SUPERSAMPLE
        if (pc[:, 2] <= 1e-3).all():
            return None
        if (pc[:, 2] <= 1e-3).any():  # straddles the camera plane: test every ray
            return 0, self.h * s, 0, self.w * s
        u = (FOCAL * pc[:, 0] / pc[:, 2] + self.w / 2) * s
        v = (FOCAL * pc[:, 1] / pc[:, 2] + self.h / 2) * s
        c0, c1 = max(0, int(math.floor(u.min())) - 1), min(self.w * s, int(math.ceil(u.max())) + 1)
        r0, r1 = max(0, int(math.floor(v.min())) - 1), min(self.h * s, int(math.ceil(v.max())) + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1


# ---------------------------------------------------------------------------------- questions ---

class QuestionMaker:
    def __init__(self, spec: dict, objects: list[dict], first_frame: dict[str, int], rng):
        self.spec = spec
        self.objects = objects
        self.rng = rng
        self.by_class: dict[str, list[dict]] = {}
        for o in objects:
            self.by_class.setdefault(o["class"], []).append(o)
        self.classes = sorted(self.by_class)
        self.unique = [c for c in self.classes if len(self.by_class[c]) == 1]
        self.first_frame = first_frame

    def obj(self, cls: str) -> dict:
        return self.by_class[cls][0]

    def mc(self, correct: str, distractors: list[str], n: int) -> tuple[list[str], str]:
        """Options with the correct one at a seeded random position."""
        pool = list(distractors)
        others = [pool[i] for i in self.rng.permutation(len(pool))[: n - 1]]
        pos = int(self.rng.integers(n))
        opts = others[:pos] + [correct] + others[pos:]
        letters = "ABCDEFGH"
        return [f"{letters[i]}. {t}" for i, t in enumerate(opts)], letters[pos]

    def row(self, qtype, question, options, gt):
        return {"question_type": qtype, "question": question, "options": options,
                "ground_truth": gt}

    # --- numeric types
    def counting(self, n=2):
        multi = [c for c in self.classes if len(self.by_class[c]) > 1]
        single = [c for c in self.classes if len(self.by_class[c]) == 1]
        picks = list(multi)
        while len(picks) < n:
            picks.append(single.pop(int(self.rng.integers(len(single)))))
        return [self.row("object_counting", T_COUNT.format(cat=c), None, str(len(self.by_class[c])))
                for c in picks[:n]]

    def abs_distance(self, n=2):
        pairs = []
        for a, b in itertools.combinations(self.unique, 2):
            dist = box_distance(self.obj(a), self.obj(b))
            frac = (dist * 10) % 1
            if dist >= 0.3 and abs(frac - 0.5) > 0.02:  # not at a rounding boundary
                pairs.append((a, b, dist))
        out = []
        for i in self.rng.permutation(len(pairs))[:n]:
            a, b, dist = pairs[i]
            if self.rng.random() < 0.5:
                a, b = b, a
            out.append(self.row("object_abs_distance", T_ABS_DIST.format(a=a, b=b), None,
                                f"{round(dist, 1):.1f}"))
        return out

    def size(self, n=2):
        out = []
        for i in self.rng.permutation(len(self.unique))[:n]:
            c = self.unique[i]
            out.append(self.row("object_size_estimation", T_SIZE.format(a=c), None,
                                str(int(round(max(self.obj(c)["size"]) * 100)))))
        return out

    def room_size(self):
        L, W, _ = self.spec["room"]
        return [self.row("room_size_estimation", T_ROOM, None, f"{round(L * W, 1):.1f}")]

    # --- multiple choice
    def rel_distance(self, n=2):
        cands = []
        for target in self.unique:
            others = [c for c in self.classes if c != target]
            if len(others) < 4:
                continue
            for choice in itertools.combinations(others, 4):
                d = {c: min(box_distance(self.obj(target), o) for o in self.by_class[c]) for c in choice}
                ranked = sorted(choice, key=lambda c: d[c])
                if d[ranked[1]] - d[ranked[0]] >= 0.25:
                    cands.append((target, ranked))
        out = []
        used = set()
        for i in self.rng.permutation(len(cands)):
            target, ranked = cands[i]
            if target in used:
                continue
            used.add(target)
            opts, gt = self.mc(ranked[0], ranked[1:], 4)
            names = ", ".join(o[3:] for o in opts)
            out.append(self.row("object_rel_distance", T_REL_DIST.format(choices=names, a=target),
                                opts, gt))
            if len(out) == n:
                break
        return out

    def _triples(self):
        for a, b, c in itertools.permutations(self.unique, 3):
            f = xy(self.obj(b)) - xy(self.obj(a))
            v = xy(self.obj(c)) - xy(self.obj(a))
            if np.linalg.norm(f) < 0.5 or np.linalg.norm(v) < 0.5:
                continue
            yield a, b, c, signed_angle(f, v), signed_angle(f, xy(self.obj(c)) - xy(self.obj(b)))

    def rel_direction(self, kind: str, n: int, used: set):
        cands = []
        for a, b, c, ang, ang_b in self._triples():
            if kind == "easy":
                # left/right of the orienting object: the viewer's side and the side of the line
                # through b both agree, well away from the line of sight
                if 20 <= abs(ang) <= 120 and abs(ang_b) >= 20 and (ang > 0) == (ang_b > 0):
                    cands.append((a, b, c, "left" if ang > 0 else "right", ["left", "right"]))
            elif kind == "medium":
                if abs(ang) >= 15 and abs(abs(ang) - 135) >= 12:
                    ans = "back" if abs(ang) >= 135 else ("left" if ang > 0 else "right")
                    cands.append((a, b, c, ans, ["left", "right", "back"]))
            else:
                if min(abs(ang), abs(abs(ang) - 90), 180 - abs(ang)) >= 15:
                    ans = ("front" if abs(ang) < 90 else "back") + ("-left" if ang > 0 else "-right")
                    cands.append((a, b, c, ans, ["front-left", "front-right", "back-left", "back-right"]))
        # prefer variety of answers: round-robin over the answer values
        order = [cands[i] for i in self.rng.permutation(len(cands))]
        out = []
        seen_ans: set = set()
        mine: set = set()
        # prefer triples no other question used and answers not given yet; then relax
        for pass_ in range(3):
            for a, b, c, ans, labels in order:
                if len(out) == n:
                    break
                if ((a, b, c) in mine or (pass_ < 2 and (a, b, c) in used)
                        or (pass_ == 0 and ans in seen_ans)):
                    continue
                used.add((a, b, c))
                mine.add((a, b, c))
                seen_ans.add(ans)
                opts, gt = self.mc(ans, [x for x in labels if x != ans], len(labels))
                tmpl = {"easy": T_DIR_EASY, "medium": T_DIR_MEDIUM, "hard": T_DIR_HARD}[kind]
                out.append(self.row(f"object_rel_direction_{kind}", tmpl.format(a=a, b=b, c=c),
                                    opts, gt))
        return out

    @staticmethod
    def turn(h1, h2):
        ang = signed_angle(h1, h2)
        if abs(ang) < 30 or abs(abs(ang) - 135) < 15:
            return None
        return "Turn Back" if abs(ang) >= 135 else ("Turn Left" if ang > 0 else "Turn Right")

    def route(self):
        """Two turns (start, waypoint, waypoint, goal) when the layout allows it, else one."""
        turns = ["Turn Left", "Turn Right", "Turn Back"]
        for n_turns in (2, 1):
            cands = []
            for names in itertools.permutations(self.unique, n_turns + 2):
                pts = [xy(self.obj(k)) for k in names]
                legs = [q - p for p, q in zip(pts, pts[1:])]
                if min(np.linalg.norm(v) for v in legs) < 0.8:
                    continue
                answer = [self.turn(h1, h2) for h1, h2 in zip(legs, legs[1:])]
                if all(answer):
                    cands.append((names, ", ".join(answer)))
            if cands:
                break
        # a route that doubles back at every waypoint is legal but silly: avoid it when possible
        cands = [c for c in cands if c[1].count("Back") < max(1, n_turns)] or cands
        if not cands:
            return []  # a layout with no legal route (random rooms only; the bundled ones all have one)
        names, ans = cands[int(self.rng.integers(len(cands)))]
        if n_turns == 2:
            a, b, c, d = names
            question = T_ROUTE.format(a=a, b=b, c=c, d=d)
            others = [f"{x}, {y}" for x in turns for y in turns if f"{x}, {y}" != ans]
        else:
            a, b, d = names
            question = T_ROUTE_1.format(a=a, b=b, d=d)
            others = [x for x in turns if x != ans]
        opts, gt = self.mc(ans, others, min(4, len(others) + 1))
        return [self.row("route_planning", question, opts, gt)]

    def appearance(self):
        best = None
        for combo in itertools.combinations(self.classes, 4):
            frames = sorted(self.first_frame[c] for c in combo)
            if frames[-1] >= NUM_FRAMES:  # never seen
                continue
            gap = min(b - a for a, b in zip(frames, frames[1:]))
            if best is None or gap > best[0]:
                best = (gap, combo)
        if best is None or best[0] < 3:
            return []  # random rooms only: the bundled ones all have 4 categories to order
        combo = list(best[1])
        order = sorted(combo, key=lambda c: self.first_frame[c])
        asked = [combo[i] for i in self.rng.permutation(4)]
        wrong = []
        for perm in itertools.permutations(order):
            if list(perm) != order:
                wrong.append(", ".join(perm))
        opts, gt = self.mc(", ".join(order), wrong, 4)
        return [self.row("obj_appearance_order", T_APPEAR.format(choices=", ".join(asked)), opts, gt)]

    def all(self, strict: bool = True):
        used: set = set()
        rows = (self.counting() + self.abs_distance() + self.size() + self.room_size()
                + self.rel_distance() + self.rel_direction("easy", 2, used)
                + self.rel_direction("medium", 2, used) + self.rel_direction("hard", 2, used)
                + self.route() + self.appearance())
        got = {r["question_type"] for r in rows}
        missing = set(QUESTION_TYPES) - got
        if missing and strict:
            raise RuntimeError(f"{self.spec['name']}: could not ask {sorted(missing)}")
        return rows


# ------------------------------------------------------------------------------------- output ---

def pick_codec() -> str:
    import av

    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def decode_video(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def write_video(path: Path, frames: list[np.ndarray], codec: str, keep_same: bool = True) -> bool:
    """Encode frames to path; returns False when an existing file was kept instead.

    libx264's output bytes are not reproducible from run to run here (they vary with the process's
    heap state, even single-threaded) although the decoded pixels agree to about one grey level.
    So that regenerating does not churn the committed videos, an existing file whose decoded
    frames match the new encode that closely is kept (keep_same=False always rewrites).
    """
    import av

    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"crf": str(X264_CRF), "preset": "medium", "threads": "1"}
        else:
            stream.bit_rate = 400_000
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")  # BT.601
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    if keep_same and path.exists():
        try:
            old = decode_video(path)
        except Exception:  # unreadable: replace it
            old = []
        new = decode_video(tmp)
        if len(old) == len(new) and all(
                a.shape == b.shape and np.abs(a.astype(np.int16) - b).mean() < 2.0
                for a, b in zip(old, new)):
            tmp.unlink()
            return False
    tmp.replace(path)
    return True


def compact_json(obj) -> str:
    """Indented JSON whose innermost lists of numbers stay on one line."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    return re.sub(r"\[\s*(-?[0-9][-+0-9.eE]*(?:,\s*-?[0-9][-+0-9.eE]*)*)\s*\]",
                  lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def dump_json(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def random_scenes(count: int, seed: int, first_index: int = 1000) -> list[dict]:
    """`count` more rooms in the bundled scenes' style, each a pure function of (seed, index): room
    size, image orientation, 5-8 objects of the known classes, camera circle. For benchmarks that
    need many scenes (e.g. training on some rooms and evaluating on unseen ones)."""
    specs = []
    for k in range(count):
        index = first_index + k
        rng = np.random.default_rng([seed, index])
        room = (round(float(rng.uniform(4.0, 7.5)), 1), round(float(rng.uniform(3.5, 5.5)), 1),
                round(float(rng.uniform(2.5, 2.9)), 1))
        objects = sorted(str(c) for c in rng.choice(sorted(CLASSES), size=int(rng.integers(5, 9)), replace=True))
        spec = {"name": f"room_{index:04d}", "room": room, "image": (320, 240) if rng.random() < 0.75 else (240, 320),
                "objects": objects, "cam_radius": round(float(rng.uniform(0.45, 0.8)), 2),
                "start_deg": round(float(rng.uniform(0, 360)), 1)}
        attempt = 0
        while True:  # another layout seed, and every 8 tries one object fewer, until the room fits them
            spec["seed"] = int(rng.integers(1, 10**6))
            try:
                place_objects(spec)
                break
            except RuntimeError as exc:
                attempt += 1
                if attempt % 8 == 0:  # this room cannot hold that piece: leave one of them out
                    if len(spec["objects"]) <= 3:
                        raise
                    spec["objects"].remove(str(exc).rsplit(" ", 1)[-1])
        specs.append(spec)
    return specs


def generate(out: Path, media: bool = True, quiet: bool = False, rewrite_videos: bool = False,
             scenes: list[dict] | None = None) -> dict:
    t0 = time.time()
    codec = pick_codec() if media else None
    scenes_out = []
    rows = []
    for si, spec in enumerate(SCENES if scenes is None else scenes):
        objects = place_objects(spec)
        K, poses = camera_path(spec)
        renderer = Renderer(spec, objects, K)
        w, h = spec["image"]
        min_px = VISIBLE_FRACTION * w * h
        first = [NUM_FRAMES] * len(objects)
        frames = []
        for i, c2w in enumerate(poses):
            img, counts = renderer.render(c2w)
            frames.append(img)
            for k, cnt in enumerate(counts):
                if cnt >= min_px and first[k] == NUM_FRAMES:
                    first[k] = i
        for o, f in zip(objects, first):
            o["first_visible_frame"] = f if f < NUM_FRAMES else None
        first_by_class: dict[str, int] = {}
        for o, f in zip(objects, first):
            first_by_class[o["class"]] = min(first_by_class.get(o["class"], NUM_FRAMES), f)
        if media:
            fdir = out / "frames" / DATASET / spec["name"]
            fdir.mkdir(parents=True, exist_ok=True)
            for old in fdir.glob("*.jpg"):
                old.unlink()
            for i, img in enumerate(frames):
                Image.fromarray(img).save(fdir / f"{i}.jpg", quality=JPEG_QUALITY, optimize=True)
            write_video(out / "videos" / DATASET / f"{spec['name']}.mp4", frames, codec,
                        keep_same=not rewrite_videos)
        qm = QuestionMaker(spec, objects, first_by_class, np.random.default_rng(1000 + si))
        for r in qm.all(strict=scenes is None):
            rows.append({"id": len(rows), "dataset": DATASET, "scene_name": spec["name"], **r})
        L, W, H = spec["room"]
        scenes_out.append({
            "scene_name": spec["name"],
            "room": {"length": L, "width": W, "height": H, "floor_area": round(L * W, 2)},
            "image": {"width": w, "height": h},
            "intrinsics": {"fx": FOCAL, "fy": FOCAL, "cx": w / 2, "cy": h / 2},
            "num_frames": NUM_FRAMES,
            "fps": FPS,
            "video": f"videos/{DATASET}/{spec['name']}.mp4",
            "frames_dir": f"frames/{DATASET}/{spec['name']}",
            "objects": objects,
            "camera": {"c2w": poses},
        })
        if not quiet:
            print(f"{spec['name']}: {len(objects)} objects, {NUM_FRAMES} frames {w}x{h}, "
                  f"first visible frames {first}", file=sys.stderr)
    meta = {
        "dataset": DATASET,
        "generator": "examples/make_examples.py",
        "conventions": {
            "units": "metres",
            "world": "z up; the room spans [0, length] x [0, width] x [0, height]; objects are "
                     "axis-aligned boxes given by centre and full size (x, y, z)",
            "camera": "OpenCV pinhole: x right, y down, z forward; c2w is the 4x4 camera-to-world "
                      "matrix per frame (row-major)",
            "first_visible_frame": f"first frame where the object covers >= {VISIBLE_FRACTION:.1%} "
                                   "of the image (null if never)",
        },
        "scenes": scenes_out,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "scenes.json").write_text(compact_json(meta) + "\n")
    (out / "questions.jsonl").write_text("".join(dump_json(r) + "\n" for r in rows))
    (out / "annotate.jsonl").write_text("".join(dump_json(r) + "\n" for r in ANNOTATE))
    if not quiet:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["question_type"]] = counts.get(r["question_type"], 0) + 1
        print(f"{len(rows)} questions: {counts}", file=sys.stderr)
        print(f"wrote {out} in {time.time() - t0:.1f}s (codec {codec})", file=sys.stderr)
    return {"questions": rows, "scenes": meta}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                   help="output folder (default: the examples/ folder this script is in)")
    p.add_argument("--no-media", action="store_true",
                   help="write only scenes.json, questions.jsonl and annotate.jsonl")
    p.add_argument("--rewrite-videos", action="store_true",
                   help="always re-encode the mp4s (by default an existing mp4 whose decoded frames "
                        "match the new encode within ~2 grey levels is kept, so the bytes do not churn)")
    p.add_argument("--random-rooms", type=int, default=0, metavar="N",
                   help="render N procedurally generated rooms (room_1000, ...) instead of the bundled four")
    p.add_argument("--seed", type=int, default=0, help="layout seed of --random-rooms")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args(argv)
    scenes = random_scenes(args.random_rooms, args.seed) if args.random_rooms else None
    generate(args.out, media=not args.no_media, quiet=args.quiet, rewrite_videos=args.rewrite_videos, scenes=scenes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
