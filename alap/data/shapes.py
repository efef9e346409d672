"""Rasterise layered 2-D primitives into per-pixel geometry: part index, local coordinates, surface normal.

The synthetic renderers derive every pixel's colour from this geometry only (never from fresh noise), so
a target image is a deterministic function of shapes that are visible in the input image or mask; that is
what makes the synthetic tasks learnable by a small generator in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Primitive:
    """A filled superellipse ``|u|^p + |v|^p <= 1`` in its own rotated, scaled frame.

    ``cx, cy`` and the half-sizes ``a`` (along the primitive's axis) and ``b`` (across it) are in pixels;
    ``angle`` (radians) turns the axis away from +x. ``power`` 2 gives an ellipse, larger values a
    rounded rectangle. ``surface`` chooses the normal used for shading: a ``dome`` (ellipsoid cap) or a
    ``cylinder`` lying along the axis (limbs, necks, tails). ``label`` is what the pixel shows in a mask
    (a class id); ``texture`` tells the renderer which pattern to draw there (default: the label), so two
    parts of one class, like face and neck, can still be told apart.
    """

    cx: float
    cy: float
    a: float
    b: float
    angle: float
    label: int
    power: float = 2.0
    surface: str = "dome"
    texture: int | None = None


@dataclass
class Canvas:
    """Per-pixel result of :func:`rasterize`: arrays of shape (H, W) except ``normal`` (3, H, W).

    ``part`` is the index of the top-most primitive covering the pixel (-1 for background), ``label`` and
    ``texture`` its label and texture id (0 for background), ``u, v`` the pixel's coordinates in that
    primitive's frame (in [-1, 1]).
    """

    part: np.ndarray
    label: np.ndarray
    texture: np.ndarray
    u: np.ndarray
    v: np.ndarray
    normal: np.ndarray


def _window(p: Primitive, size: int) -> tuple[slice, slice] | None:
    """Rows and columns of the pixel grid the primitive can touch: its rotated bounding box, clipped."""
    cos, sin = abs(np.cos(p.angle)), abs(np.sin(p.angle))
    half_x, half_y = p.a * cos + p.b * sin, p.a * sin + p.b * cos
    x0, x1 = max(0, int(np.floor(p.cx - half_x))), min(size, int(np.ceil(p.cx + half_x)) + 1)
    y0, y1 = max(0, int(np.floor(p.cy - half_y))), min(size, int(np.ceil(p.cy + half_y)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    return slice(y0, y1), slice(x0, x1)


def rasterize(primitives: list[Primitive], size: int) -> Canvas:
    """Paint ``primitives`` in order (later ones on top) onto a ``size`` x ``size`` grid of pixel centres."""
    part = np.full((size, size), -1, dtype=np.int16)
    label = np.zeros((size, size), dtype=np.uint8)
    texture = np.zeros((size, size), dtype=np.uint8)
    u_map = np.zeros((size, size))
    v_map = np.zeros((size, size))
    normal = np.zeros((3, size, size))
    normal[2] = 1.0
    for index, p in enumerate(primitives):
        if p.surface not in ("dome", "cylinder"):
            raise ValueError(f"Primitive.surface must be 'dome' or 'cylinder', got {p.surface!r}")
        window = _window(p, size)
        if window is None:
            continue
        rows, cols = window
        ys, xs = np.mgrid[rows, cols].astype(np.float64) + 0.5
        cos, sin = np.cos(p.angle), np.sin(p.angle)
        dx, dy = xs - p.cx, ys - p.cy
        u = (dx * cos + dy * sin) / p.a
        v = (-dx * sin + dy * cos) / p.b
        inside = np.abs(u) ** p.power + np.abs(v) ** p.power <= 1.0
        ui, vi = u[inside], v[inside]
        nu = ui if p.surface == "dome" else np.zeros_like(ui)
        nv = vi
        scale = np.clip(nu * nu + nv * nv, 0.0, 0.95)
        shrink = np.sqrt(scale) / np.sqrt(np.maximum(nu * nu + nv * nv, 1e-12))
        nu, nv = nu * shrink, nv * shrink
        part[rows, cols][inside] = index
        label[rows, cols][inside] = p.label
        texture[rows, cols][inside] = p.label if p.texture is None else p.texture
        u_map[rows, cols][inside] = ui
        v_map[rows, cols][inside] = vi
        normal[0, rows, cols][inside] = nu * cos - nv * sin
        normal[1, rows, cols][inside] = nu * sin + nv * cos
        normal[2, rows, cols][inside] = np.sqrt(1.0 - scale)
    return Canvas(part=part, label=label, texture=texture, u=u_map, v=v_map, normal=normal)


LIGHT = np.array([-0.45, -0.55, 0.70]) / np.linalg.norm([-0.45, -0.55, 0.70])


def lambert(canvas: Canvas, ambient: float = 0.45) -> np.ndarray:
    """Diffuse shading in [ambient, 1] from a fixed light at the upper left; background pixels get 1.

    The light is the same for every sample, so shading is a function of the shapes alone.
    """
    diffuse = np.clip(np.tensordot(LIGHT, canvas.normal, axes=1), 0.0, 1.0)
    return np.where(canvas.part >= 0, ambient + (1.0 - ambient) * diffuse, 1.0)


def outlines(canvas: Canvas, width: int) -> np.ndarray:
    """Cartoon outline pixels: where the label changes, drawn on the side of the lower (earlier) part.

    Drawing on the lower side keeps small top features (eyes, mouth) whole instead of eating them; the
    line is then thickened to ``width`` pixels.
    """
    label, part = canvas.label, canvas.part
    edge = np.zeros(label.shape, dtype=bool)
    for axis in (0, 1):
        n = label.shape[axis]
        head, tail = [slice(None)] * 2, [slice(None)] * 2
        head[axis], tail[axis] = slice(0, n - 1), slice(1, n)
        differs = label[tuple(head)] != label[tuple(tail)]
        lower_first = part[tuple(head)] < part[tuple(tail)]
        edge[tuple(head)] |= differs & lower_first
        edge[tuple(tail)] |= differs & ~lower_first
    for _ in range(width - 1):
        grown = edge.copy()
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        grown[1:, :] |= edge[:-1, :]
        grown[:-1, :] |= edge[1:, :]
        edge = grown
    return edge


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) floats in [0, 1] -> uint8, rounding so results are exact and platform independent."""
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
