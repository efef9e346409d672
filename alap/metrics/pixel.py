"""Pixel-level fidelity: PSNR and SSIM per image, pure torch, batched, on any device; and the 8-bit rounding that
every generated image goes through before it is scored.

Generators in alap output tanh images in [-1, 1]; both metrics are computed on the [0, 1] scale with data
range 1 so that the numbers match what image-quality papers report. SSIM follows Wang et al. (2004):
11x11 gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over the valid region only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_RANGE_TOLERANCE = 1e-4
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def check_images(x: torch.Tensor, name: str) -> torch.Tensor:
    """Validate a batch of images in [-1, 1] shaped (N, C, H, W).

    Catching [0, 1] or [0, 255] inputs here matters: every metric would silently produce a wrong number.
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected a batch of images shaped (N, C, H, W), got {shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name}: the batch is empty")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected floating-point images in [-1, 1], got dtype {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: images contain NaN or infinite values")
    low, high = float(x.min()), float(x.max())
    if low < -1 - _RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
        raise ValueError(
            f"{name}: expected values in [-1, 1] (generator tanh range), got [{low:.4g}, {high:.4g}]; "
            "convert [0, 1] images with x * 2 - 1 and [0, 255] images with x / 127.5 - 1"
        )
    return x


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] as the 8-bit values a PNG of them stores (0..255, rounded to nearest, out-of-range values
    clamped): the image grids and :func:`round_to_8bit` share this one conversion."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def round_to_8bit(images: torch.Tensor) -> torch.Tensor:
    """Generated images as they would score after being saved as PNGs and read back (in [-1, 1], float32).

    The standard protocol, and every published FID, scores 8-bit images: pytorch-fid reads saved PNGs. Scoring the
    generator's unrounded floats instead moved one student's FID by 2.8, not always in one direction, so evaluate
    rounds every generated image before any metric sees it. Read back as alap's image loader reads a PNG (u / 127.5
    - 1), which Inception's [0, 1] input turns into pytorch-fid's u / 255.
    """
    return to_uint8(check_images(images, "images")).float().div(127.5).sub(1.0)


def _unit_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both batches on the [0, 1] scale in float64: SSIM's variances are differences of nearly equal
    numbers, and in float32 their rounding (~1e-7) is visible against K2^2 = 9e-4 in the 5th decimal."""
    x, y = check_images(x, "x"), check_images(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    return (x.double() + 1) / 2, (y.to(x.device).double() + 1) / 2


PSNR_CAP_DB = 100.0  # identical images have infinite PSNR; a cap keeps means and comparisons finite


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image (N,); identical images give +inf."""
    x, y = _unit_pair(x, y)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    return (10 * torch.log10(1.0 / mse)).float()


def _gaussian_window(channels: int, device: torch.device) -> torch.Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-coords.pow(2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural similarity per image (N,), averaged over channels and the valid region; identical -> 1."""
    x, y = _unit_pair(x, y)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    window = _gaussian_window(channels, x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x.pow(2)
    var_y = blur(y * y) - mu_y.pow(2)
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1).float()
