"""Synthetic horses and zebras for the unpaired (CycleGAN) task: one geometry, two coats.

An animal is a side view built from body, neck, head, legs and tail with random position, size, tilt,
facing and proportions, on a sky-and-grass background. Domain A wears a plain shaded coat, domain B a
striped one whose stripes run across each part's own axis (phase and orientation follow the body), so
the zebra version of a horse, used as hidden ground truth, is a deterministic function of the horse image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alap.data.shapes import Canvas, Primitive, lambert, rasterize, to_uint8

BODY, NECK, HEAD, LEG, TAIL = 1, 2, 3, 4, 5
STRIPE_PERIODS = {BODY: 5.0, NECK: 3.0, HEAD: 2.5, LEG: 4.0}  # stripes per part length
WHITE, BLACK = np.array((0.95, 0.95, 0.93)), np.array((0.07, 0.07, 0.08))


@dataclass(frozen=True)
class Animal:
    """One sampled animal: its parts (painting order), coat colour for the plain rendering, and scene."""

    parts: list[Primitive]
    coat: np.ndarray
    sky: np.ndarray
    grass: np.ndarray
    horizon: float


class _BodyFrame:
    """Maps body-local coordinates (x toward the head, y down, in body half-length/half-height) to pixels."""

    def __init__(self, cx: float, cy: float, length: float, height: float, tilt: float, facing: float) -> None:
        self.cx, self.cy, self.length, self.height = cx, cy, length, height
        self.tilt, self.facing = tilt, facing

    def at(self, lx: float, ly: float) -> np.ndarray:
        x, y = self.facing * lx * self.length, ly * self.height
        cos, sin = np.cos(self.tilt), np.sin(self.tilt)
        return np.array((self.cx + x * cos - y * sin, self.cy + x * sin + y * cos))

    def direction(self, angle: float) -> float:
        """Image angle of a direction given in body-local terms (0 = toward the head, pi/2 = down)."""
        local = np.array((self.facing * np.cos(angle), np.sin(angle)))
        cos, sin = np.cos(self.tilt), np.sin(self.tilt)
        return float(np.arctan2(local[0] * sin + local[1] * cos, local[0] * cos - local[1] * sin))

    def limb(
        self, start: np.ndarray, angle: float, length: float, half_width: float, label: int, power: float = 4.0
    ) -> Primitive:
        """A rounded, cylinder-shaded bar of ``length`` pixels from ``start`` toward body-local ``angle``."""
        theta = self.direction(angle)
        centre = start + 0.5 * length * np.array((np.cos(theta), np.sin(theta)))
        return Primitive(
            float(centre[0]),
            float(centre[1]),
            0.5 * length + half_width,
            half_width,
            theta,
            label,
            power=power,
            surface="cylinder",
        )


def sample_animal(rng: np.random.Generator, size: int) -> Animal:
    """Draw one random animal and its scene."""
    length = size * rng.uniform(0.2, 0.27)
    body = _BodyFrame(
        cx=size * (0.5 + rng.uniform(-0.07, 0.07)),
        cy=size * (0.47 + rng.uniform(-0.05, 0.05)),
        length=length,
        height=length * rng.uniform(0.38, 0.5),
        tilt=rng.uniform(-0.12, 0.12),
        facing=float(rng.choice((-1.0, 1.0))),
    )
    leg_length = size * rng.uniform(0.17, 0.23)
    leg_width = max(size * rng.uniform(0.022, 0.03), 1.0)
    swings = rng.uniform(-0.3, 0.3, size=4)

    def leg(lx: float, swing: float) -> Primitive:
        return body.limb(body.at(lx, 0.55), np.pi / 2 + swing, leg_length, leg_width, LEG)

    neck_start = body.at(0.72, -0.35)
    neck_angle = -rng.uniform(0.85, 1.25)
    neck_length = size * rng.uniform(0.15, 0.2)
    neck = body.limb(neck_start, neck_angle, neck_length, size * rng.uniform(0.04, 0.05), NECK, power=3.0)
    neck_dir = body.direction(neck_angle)
    neck_end = neck_start + neck_length * np.array((np.cos(neck_dir), np.sin(neck_dir)))
    head_angle = rng.uniform(0.45, 0.9)
    head_half = size * rng.uniform(0.075, 0.1)
    head_dir = body.direction(head_angle)
    head_centre = neck_end + 0.6 * head_half * np.array((np.cos(head_dir), np.sin(head_dir)))
    head = Primitive(
        float(head_centre[0]), float(head_centre[1]), head_half, size * rng.uniform(0.036, 0.045), head_dir, HEAD
    )
    tail = body.limb(
        body.at(-0.95, -0.3),
        np.pi - rng.uniform(0.9, 1.3),
        size * rng.uniform(0.12, 0.17),
        max(size * 0.018, 1.0),
        TAIL,
    )
    parts = [
        leg(-0.5, swings[0]),
        leg(0.62, swings[1]),
        tail,
        Primitive(body.cx, body.cy, body.length, body.height, body.tilt, BODY),
        leg(-0.68, swings[2]),
        leg(0.48, swings[3]),
        neck,
        head,
    ]
    return Animal(
        parts=parts,
        coat=np.array((0.55, 0.35, 0.18)) + rng.uniform(-0.07, 0.07, size=3),
        sky=np.array((0.58, 0.76, 0.94)) + rng.uniform(-0.06, 0.06, size=3),
        grass=np.array((0.42, 0.62, 0.28)) + rng.uniform(-0.06, 0.06, size=3),
        horizon=size * rng.uniform(0.45, 0.7),
    )


def _background(animal: Animal, size: int) -> np.ndarray:
    """Sky above the horizon, grass below, each with a gentle vertical gradient (H x W x 3 in [0, 1])."""
    y = (np.arange(size) + 0.5)[:, None, None]
    sky = animal.sky * (0.9 + 0.1 * y / animal.horizon)
    grass = animal.grass * (1.0 - 0.25 * (y - animal.horizon) / size)
    column = np.where(y < animal.horizon, sky, grass)
    return np.broadcast_to(column, (size, size, 3)).copy()


def _stripes(canvas: Canvas) -> np.ndarray:
    """Zebra coat colour (H x W x 3): bands across each part's axis, bent slightly along the body."""
    tex, u, v = canvas.texture, canvas.u, canvas.v
    periods = np.zeros(tex.shape)
    for label, n in STRIPE_PERIODS.items():
        periods[tex == label] = n
    along = u + 0.12 * v * v * (tex == BODY)
    wave = np.sin(np.pi * periods * (along + 1.0))
    white = np.clip(0.5 + 1.5 * wave, 0.0, 1.0)[..., None]
    white[tex == TAIL] = 0.0
    return white * WHITE + (1.0 - white) * BLACK


def render_animal(animal: Animal, size: int, striped: bool) -> np.ndarray:
    """The animal in its scene (uint8, H x W x 3): a plain shaded coat, or zebra stripes when ``striped``."""
    canvas = rasterize(animal.parts, size)
    rgb = _background(animal, size)
    if striped:
        coat = _stripes(canvas)
    else:
        coat = np.broadcast_to(animal.coat, rgb.shape).copy()
        coat[canvas.texture == TAIL] *= 0.45
    body = canvas.part >= 0
    rgb[body] = coat[body] * lambert(canvas)[body, None]
    return to_uint8(rgb)
