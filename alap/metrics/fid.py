"""FID and KID from pytorch-fid's Inception pool3 features, with the reference weights only.

docs/architecture.md: only a distance computed with the reference TF Inception (inception-2015-12-05) weights may be
called ``fid``. InceptionFeatures therefore refuses to run (MissingWeightsError / UnrecognisedWeightsError)
instead of falling back to other weights, and every result carries the weights' sha256 and origin.

FID's tr sqrtm(S1 S2) is computed exactly as a nuclear norm of a small matrix (see fid_from_features):
stable when there are fewer samples than feature dimensions and much faster than a matrix square root.
KID is torchmetrics' estimator: unbiased MMD with the polynomial kernel (x.y / d + 1)^3, averaged over
random subsets.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from pytorch_fid.inception import InceptionV3

from alap.metrics.pixel import check_images
from alap.metrics.weights.files import FID_INCEPTION_FILE, load_state_dict_file
from alap.metrics.weights.provide import require_weights
from alap.paths import DEFAULT_TORCH_HOME

FEATURE_DIM = 2048
_HUB_LOCK = threading.Lock()


@contextlib.contextmanager
def _torch_hub_dir(torch_home: Path) -> Iterator[None]:
    """Point torch hub at ``torch_home`` while pytorch-fid builds its network.

    pytorch-fid finds its weights only through torch hub's cache directory (it takes no path), so the hub
    directory is switched for the duration and then restored, including the "unset, follow $TORCH_HOME"
    state that only the private ``_hub_dir`` expresses.
    """
    with _HUB_LOCK:
        previous = torch.hub._hub_dir
        torch.hub.set_dir(str(Path(torch_home) / "hub"))
        try:
            yield
        finally:
            torch.hub._hub_dir = previous


class InceptionFeatures:
    """pytorch-fid's InceptionV3 pool3 extractor (2048-d) for images in [-1, 1] of any size."""

    def __init__(self, torch_home: Path = DEFAULT_TORCH_HOME, device: torch.device | str = "cpu", batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        path, self.provenance = require_weights(Path(torch_home), FID_INCEPTION_FILE)
        # pytorch-fid unpickles the file without weights_only; loading it once with weights_only first
        # guarantees it holds nothing but tensors.
        load_state_dict_file(path)
        with _torch_hub_dir(Path(torch_home)):
            model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
        # Inception at 299x299 is most of an evaluation's time on a CPU; channels-last weights run its convs
        # about 1.4x faster there (pool3 features agree with the default layout to ~1e-5).
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pool3 features (N, 2048), float64 on the CPU, for RGB images in [-1, 1] shaped (N, 3, H, W).

        pytorch-fid takes [0, 1] and resizes to 299x299 (bilinear) itself.
        """
        images = check_images(images, "images").float()
        if images.shape[1] != 3:
            raise ValueError(f"images: Inception needs RGB (3 channels), got {images.shape[1]}")
        chunks = []
        for chunk in images.split(self.batch_size):
            pool3 = self.model((chunk.to(self.device) + 1) / 2)[0]
            chunks.append(pool3.flatten(1).double().cpu())
        return torch.cat(chunks)


def _check_features(f: torch.Tensor, name: str, min_samples: int) -> torch.Tensor:
    if not isinstance(f, torch.Tensor) or f.dim() != 2:
        raise ValueError(f"{name}: expected features shaped (N, D), got {getattr(f, 'shape', type(f).__name__)}")
    if f.shape[0] < min_samples:
        raise ValueError(f"{name}: need at least {min_samples} samples, got {f.shape[0]}")
    return f.double()


def _compact_factor(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and a factor B with B^T B = A^T A for the centred features A, with min(n, d) rows.

    With fewer samples than dimensions A itself is the smallest such factor; otherwise sqrt(L) V^T from
    the eigendecomposition of A^T A (d x d). Either way the covariance is B^T B / (n - 1).
    """
    mean = f.mean(dim=0)
    centred = f - mean
    if centred.shape[0] <= centred.shape[1]:
        return mean, centred
    values, vectors = torch.linalg.eigh(centred.T @ centred)
    return mean, values.clamp(min=0).sqrt()[:, None] * vectors.T


def fid_from_features(f1: torch.Tensor, f2: torch.Tensor, device: torch.device | str = "cpu") -> float:
    """Frechet distance between Gaussians fitted to two feature sets (unbiased covariances, float64).

    With S_i = B_i^T B_i / (n_i - 1), the eigenvalues of S1 S2 are the squared singular values of
    B1 B2^T / sqrt((n1 - 1)(n2 - 1)), so tr sqrtm(S1 S2) is the nuclear norm of that small matrix
    (at most min(n, d) on a side). Exact, free of the matrix square root's trouble with the singular
    covariances of small sample sets, and fast: no d x d decomposition at all when n <= d.
    """
    f1, f2 = _check_features(f1, "f1", 2), _check_features(f2, "f2", 2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    mu1, b1 = _compact_factor(f1.to(device))
    mu2, b2 = _compact_factor(f2.to(device))
    c1, c2 = f1.shape[0] - 1, f2.shape[0] - 1
    tr_covmean = torch.linalg.svdvals(b1 @ b2.T).sum() / (c1 * c2) ** 0.5
    return float((mu1 - mu2).square().sum() + b1.square().sum() / c1 + b2.square().sum() / c2 - 2 * tr_covmean)


def _poly_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.T / a.shape[1] + 1) ** 3


def _poly_mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 estimate (diagonals of the within-set kernels excluded)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    within = k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()
    return within / (m * (m - 1)) - 2 * k_xy.sum() / m**2


def kid_from_features(
    f1: torch.Tensor,
    f2: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, population std) of the MMD over ``subsets`` random subsets.

    Like torchmetrics, each subset draws ``subset_size`` samples without replacement from each set, and a
    subset larger than either set is an error. ``seed`` makes the draw reproducible.
    """
    f1, f2 = _check_features(f1, "f1", 2), _check_features(f2, "f2", 2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if not 2 <= subset_size <= min(len(f1), len(f2)):
        raise ValueError(
            f"subset_size must be between 2 and the smaller set's size ({min(len(f1), len(f2))}), got {subset_size}"
        )
    generator = torch.Generator().manual_seed(seed)
    f1, f2 = f1.to(device), f2.to(device)
    scores = []
    for _ in range(subsets):
        x = f1[torch.randperm(len(f1), generator=generator)[:subset_size].to(f1.device)]
        y = f2[torch.randperm(len(f2), generator=generator)[:subset_size].to(f2.device)]
        scores.append(_poly_mmd(x, y))
    stacked = torch.stack(scores)
    return float(stacked.mean()), float(stacked.std(unbiased=False))


def _collect(
    extractor: InceptionFeatures, batches: Iterable[torch.Tensor], name: str
) -> tuple[torch.Tensor, list[int]]:
    features, size = [], None
    for batch in batches:
        batch_size = list(batch.shape[-2:])
        if size is not None and batch_size != size:
            raise ValueError(f"{name}: all images must have one size, got {size} and {batch_size}")
        size = batch_size
        features.append(extractor.features(batch))
    if not features:
        raise ValueError(f"{name}: no images")
    return torch.cat(features), size


def compute_fid_kid(
    fake: Iterable[torch.Tensor],
    real: Iterable[torch.Tensor],
    extractor: InceptionFeatures,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """FID and KID between generated and real images (batches in [-1, 1]), with what they were measured on.

    The KID subset size is capped at the smaller set's size (small evaluation sets are the norm here);
    the size actually used is recorded.
    """
    fake_features, fake_size = _collect(extractor, fake, "fake")
    real_features, real_size = _collect(extractor, real, "real")
    subset_size = min(kid_subset_size, len(fake_features), len(real_features))
    kid, kid_std = kid_from_features(real_features, fake_features, kid_subsets, subset_size, seed, extractor.device)
    return {
        "fid": fid_from_features(real_features, fake_features, extractor.device),
        "kid": kid,
        "kid_std": kid_std,
        "provenance": {
            "extractor": "pytorch-fid InceptionV3 pool3 (input resized to 299x299 bilinear)",
            "pytorch_fid_version": importlib.metadata.version("pytorch-fid"),
            "weights": extractor.provenance,
            "feature_dim": FEATURE_DIM,
            "n_fake": len(fake_features),
            "n_real": len(real_features),
            "image_size_fake": fake_size,
            "image_size_real": real_size,
            "kid": {
                "subsets": kid_subsets,
                "subset_size": subset_size,
                "seed": seed,
                "kernel": "polynomial (x.y/d + 1)^3",
            },
        },
    }
