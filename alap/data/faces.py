"""Synthetic faces: a random face layout as a class mask, its shaded photo-like rendering and its cartoon.

Mirrors CelebAMask-HQ (mask -> face) and face -> cartoon. Geometry (position, size, tilt, proportions,
hair style) is random per sample; colours are fixed per class, shading follows the shapes under a fixed
light and textures (hair strands, iris, lips, blush) follow each part's own frame. So the face is a
deterministic function of its mask and the cartoon a deterministic function of the face.
"""

from __future__ import annotations

import numpy as np

from alap.data.shapes import Canvas, Primitive, lambert, outlines, rasterize, to_uint8

CLASSES = ("background", "skin", "hair", "eyes", "brows", "nose", "mouth", "ears")
NUM_CLASSES = len(CLASSES)
BACKGROUND, SKIN, HAIR, EYES, BROWS, NOSE, MOUTH, EARS = range(NUM_CLASSES)
NECK_TEXTURE = NUM_CLASSES  # skin class, but no blush: told apart from the face by its texture id

PHOTO = np.array(
    [
        (0.80, 0.84, 0.90),  # background
        (0.93, 0.74, 0.61),  # skin
        (0.36, 0.22, 0.12),  # hair
        (0.96, 0.96, 0.96),  # eyes (sclera; iris and pupil drawn by texture)
        (0.24, 0.15, 0.10),  # brows
        (0.82, 0.58, 0.47),  # nose
        (0.78, 0.30, 0.33),  # mouth
        (0.88, 0.66, 0.55),  # ears
        (0.93, 0.74, 0.61),  # neck
    ]
)
CARTOON = np.array(
    [
        (1.00, 0.95, 0.80),
        (1.00, 0.86, 0.70),
        (0.22, 0.22, 0.50),
        (1.00, 1.00, 1.00),
        (0.10, 0.10, 0.10),
        (0.96, 0.64, 0.52),
        (0.92, 0.18, 0.24),
        (0.98, 0.78, 0.62),
        (1.00, 0.86, 0.70),
    ]
)
OUTLINE = np.array((0.08, 0.08, 0.10))


class _FaceFrame:
    """Maps face-local coordinates (x across the face, y down it, both in face radii) to pixels."""

    def __init__(self, cx: float, cy: float, a: float, b: float, tilt: float) -> None:
        self.cx, self.cy, self.a, self.b, self.tilt = cx, cy, a, b, tilt

    def at(self, lx: float, ly: float) -> tuple[float, float]:
        x, y = lx * self.a, ly * self.b
        cos, sin = np.cos(self.tilt), np.sin(self.tilt)
        return self.cx + x * cos - y * sin, self.cy + x * sin + y * cos

    def part(
        self, lx: float, ly: float, ra: float, rb: float, label: int, turn: float = 0.0, **kwargs: object
    ) -> Primitive:
        """A primitive centred at local (lx, ly) with half-sizes given in face radii (ra * a, rb * b)."""
        cx, cy = self.at(lx, ly)
        return Primitive(cx, cy, ra * self.a, rb * self.b, self.tilt + turn, label, **kwargs)  # type: ignore[arg-type]


def sample_face(rng: np.random.Generator, size: int) -> list[Primitive]:
    """Draw one random face layout as primitives in painting order (back to front)."""
    a = size * rng.uniform(0.19, 0.25)
    frame = _FaceFrame(
        cx=size * (0.5 + rng.uniform(-0.08, 0.08)),
        cy=size * (0.48 + rng.uniform(-0.06, 0.06)),
        a=a,
        b=a * rng.uniform(1.2, 1.45),
        tilt=rng.uniform(-0.3, 0.3),
    )
    hair_drop = rng.uniform(-0.25, 0.35)  # short (high) to long (low) hair
    yaw = rng.uniform(-0.12, 0.12)  # inner features shift sideways, as in a slightly turned head
    eye_x, eye_y = rng.uniform(0.34, 0.46), rng.uniform(-0.15, 0.02)
    eye_scale = rng.uniform(0.85, 1.2)
    brow_turn = rng.uniform(-0.25, 0.25)
    parts = [
        frame.part(0.0, hair_drop - 0.12, rng.uniform(1.18, 1.38), rng.uniform(1.0, 1.15) + hair_drop / 2, HAIR),
        Primitive(
            *frame.at(0.0, 1.3),
            0.6 * frame.b,
            0.5 * frame.a,
            frame.tilt + np.pi / 2,
            SKIN,
            power=4.0,
            surface="cylinder",
            texture=NECK_TEXTURE,
        ),
        frame.part(-1.02, 0.05, 0.2, 0.26, EARS),
        frame.part(1.02, 0.05, 0.2, 0.26, EARS),
        frame.part(0.0, 0.0, 1.0, 1.0, SKIN),
    ]
    if rng.uniform() < 0.5:  # a fringe over the forehead
        parts.append(frame.part(0.0, -0.93, rng.uniform(0.8, 1.0), rng.uniform(0.25, 0.4), HAIR))
    for side in (-1.0, 1.0):
        parts.append(frame.part(yaw + side * eye_x, eye_y - 0.22, 0.22, 0.075, BROWS, turn=side * brow_turn))
        parts.append(frame.part(yaw + side * eye_x, eye_y, 0.16 * eye_scale, 0.09 * eye_scale, EYES))
    parts.append(frame.part(yaw, eye_y + 0.32, rng.uniform(0.09, 0.13), rng.uniform(0.15, 0.22), NOSE))
    parts.append(frame.part(yaw * 0.8, rng.uniform(0.5, 0.6), rng.uniform(0.25, 0.38), rng.uniform(0.07, 0.11), MOUTH))
    return parts


def render_face(canvas: Canvas) -> np.ndarray:
    """Photo-like face: class colour x Lambert shading x part texture (uint8, H x W x 3)."""
    tex, u, v = canvas.texture, canvas.u, canvas.v
    rgb = PHOTO[tex].copy()
    radius = np.sqrt(u * u + v * v)
    eye = tex == EYES
    rgb[eye & (radius < 0.62)] = (0.28, 0.34, 0.50)  # iris
    rgb[eye & (radius < 0.30)] = (0.04, 0.04, 0.05)  # pupil
    strands = 0.82 + 0.18 * np.sin(26.0 * np.arctan2(v, u))
    rgb[tex == HAIR] *= strands[tex == HAIR, None]
    lips = (tex == MOUTH) & (np.abs(v) < 0.22)
    rgb[lips] = (0.45, 0.12, 0.16)
    blush = np.exp(-((np.abs(u) - 0.55) ** 2 + (v - 0.32) ** 2) / 0.02) * (tex == SKIN)
    rgb += blush[..., None] * np.array((0.02, -0.12, -0.10))
    rgb *= lambert(canvas)[..., None]
    return to_uint8(rgb)


def render_cartoon(canvas: Canvas) -> np.ndarray:
    """Cartoon of the same face: flat colour per region, black pupils, dark outlines at region borders."""
    size = canvas.label.shape[0]
    rgb = CARTOON[canvas.texture].copy()
    pupil = (canvas.texture == EYES) & (np.sqrt(canvas.u**2 + canvas.v**2) < 0.5)
    rgb[pupil] = OUTLINE
    rgb[outlines(canvas, width=max(1, round(size / 100)))] = OUTLINE
    return to_uint8(rgb)


def draw_face(rng: np.random.Generator, size: int) -> Canvas:
    """Sample and rasterise one face."""
    return rasterize(sample_face(rng, size), size)
