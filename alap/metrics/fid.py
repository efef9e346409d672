"""FID and KID from pytorch-fid's Inception pool3 features, with the reference weights only.

docs/architecture.md: only a distance computed with the reference TF Inception (inception-2015-12-05) weights may be
called ``fid``. InceptionFeatures therefore refuses to run (MissingWeightsError / UnrecognisedWeightsError)
instead of falling back to other weights, and every result carries the weights' sha256 and origin.

FID's tr sqrtm(S1 S2) is computed exactly as a nuclear norm of a small matrix (see fid_from_features):
stable when there are fewer samples than feature dimensions and much faster than a matrix square root.
KID is torchmetrics' estimator: unbiased MMD with the polynomial kernel (x.y / d + 1)^3, averaged over
random subsets; its spread over the subsets is reported with it.

An FID from a few hundred images moves by several points with the sample (measured: +-6 to 7 at 80 images), so it
is reported with a bootstrap interval (fid_bootstrap_interval): both feature sets resampled with replacement, the
2.5 and 97.5 percentiles of the resampled FIDs' spread, placed around the FID.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from pytorch_fid.inception import InceptionV3
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

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


def dataset_features(
    inception: InceptionFeatures, dataset: Dataset, key: str, batch_size: int, what: str
) -> torch.Tensor:
    """Pool3 features of every item's ``key`` image in ``dataset``, with progress on stderr (``what`` names the
    set): Inception is most of an evaluation's time on a CPU."""
    batches = DataLoader(dataset, batch_size=batch_size)
    return torch.cat(
        [inception.features(b[key]) for b in tqdm(batches, desc=f"inception ({what})", mininterval=2.0, disable=None)]
    )


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


# Resamples of the FID's bootstrap: one CPU thread takes 0.9 s at 500 samples a side and 4.6 s at 1,000 (200 took
# 1.7 and 9.0 s); the interval's ends then move by about 0.5 FID with the seed at 500 samples, against a half-width
# of about 3 (docs/architecture.md, Metrics).
FID_RESAMPLES = 100
FID_INTERVAL_LEVEL = 0.95
KID_SUBSETS = 100


def _centred_grams(f1: torch.Tensor, f2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gram matrices F1 F1^T, F2 F2^T, F1 F2^T of both sets moved by their pooled mean. FID is the same for both
    sets moved alike; moving them to their common centre keeps the entries small, so centring a resample from
    these matrices cancels little."""
    centre = torch.cat([f1, f2]).mean(dim=0)
    a, b = f1 - centre, f2 - centre
    return a @ a.T, b @ b.T, a @ b.T


def _fid_of_resample(
    grams: tuple[torch.Tensor, torch.Tensor, torch.Tensor], counts1: torch.Tensor, counts2: torch.Tensor
) -> torch.Tensor:
    """The FID of the multisets that repeat sample i of each set counts[i] times, from the sets' Gram matrices.

    Equal to fid_from_features of the repeated features, without touching the 2048-d features again: means,
    traces and the cross term all follow from inner products. A sample drawn c times is one row weighted by sqrt(c)
    (same singular values as c identical rows), so the nuclear norm is of a matrix of the distinct samples only
    (about 63% of a bootstrap resample), computed from the eigenvalues of its smaller Gram matrix.
    """
    k11, k22, k12 = grams
    i1, i2 = counts1.nonzero().squeeze(1), counts2.nonzero().squeeze(1)
    c1, c2 = counts1[i1].to(k11.dtype), counts2[i2].to(k11.dtype)
    n1, n2 = c1.sum(), c2.sum()
    w1, w2 = c1 / n1, c2 / n2
    s11, s22, s12 = k11[i1][:, i1], k22[i2][:, i2], k12[i1][:, i2]
    mm1, mm2 = w1 @ s11 @ w1, w2 @ s22 @ w2  # |mu1|^2, |mu2|^2
    row, col = s12 @ w2, w1 @ s12  # f1_i . mu2, mu1 . f2_j
    mm12 = w1 @ row  # mu1 . mu2
    trace1 = (c1 @ s11.diagonal() - n1 * mm1) / (n1 - 1)
    trace2 = (c2 @ s22.diagonal() - n2 * mm2) / (n2 - 1)
    cross = c1.sqrt()[:, None] * (s12 - row[:, None] - col[None, :] + mm12) * c2.sqrt()[None, :]
    small = cross @ cross.T if cross.shape[0] <= cross.shape[1] else cross.T @ cross
    nuclear = torch.linalg.eigvalsh(small).clamp(min=0).sqrt().sum()
    return mm1 + mm2 - 2 * mm12 + trace1 + trace2 - 2 * nuclear / ((n1 - 1) * (n2 - 1)).sqrt()


def fid_bootstrap_interval(
    f1: torch.Tensor,
    f2: torch.Tensor,
    resamples: int = FID_RESAMPLES,
    level: float = FID_INTERVAL_LEVEL,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[float, float]:
    """Bootstrap interval of the FID: both sets resampled with replacement ``resamples`` times (a fixed ``seed``: the
    same features give the same interval), and the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the
    resampled FIDs, moved by as much as their mean lies above the FID.

    The move is what keeps the interval about the FID. An FID of n samples is biased upwards by roughly 1/n, and a
    resample holds only ~63% distinct samples, so every resampled FID carries more of that bias than the FID does:
    the plain percentile interval of a seg2face teacher at 80 images was [119.9, 135.6] around an FID of 120.3. The
    resamples' spread is what drawing other test images of the same count would do to the FID; their offset is an
    artefact of the duplicates. Cost: three Gram matrices once, then per resample an eigen-decomposition of a
    matrix of about 0.63 n x 0.63 n (measured in docs/architecture.md).
    """
    f1, f2 = _check_features(f1, "f1", 2), _check_features(f2, "f2", 2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    if resamples < 2:
        raise ValueError(f"resamples must be >= 2, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    grams = _centred_grams(f1.to(device), f2.to(device))
    generator = torch.Generator().manual_seed(seed)
    fids = []
    for _ in range(resamples):
        counts = [torch.randint(len(f), (len(f),), generator=generator).bincount(minlength=len(f)) for f in (f1, f2)]
        fids.append(_fid_of_resample(grams, counts[0].to(device), counts[1].to(device)))
    resampled = torch.stack(fids).cpu()
    whole = _fid_of_resample(grams, *(torch.ones(len(f), dtype=torch.long, device=device) for f in (f1, f2)))
    quantiles = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=resampled.dtype)
    low, high = torch.quantile(resampled - resampled.mean(), quantiles) + whole.cpu()
    return float(low), float(high)


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
    subsets: int = KID_SUBSETS,
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


def distances(
    fake: torch.Tensor,
    real: torch.Tensor,
    kid_subset_size: int,
    kid_subsets: int = KID_SUBSETS,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], dict[str, Any]]:
    """FID with its bootstrap interval and KID with its spread over subsets, from generated and reference features:
    the values under docs/architecture.md's names (``fid``, ``fid_ci_low``, ``fid_ci_high``, ``kid``, ``kid_std``)
    and how they were computed. The KID subset size is capped at the smaller set's size (small evaluation sets are
    the norm here); the size actually used is recorded."""
    subset_size = min(kid_subset_size, len(fake), len(real))
    kid, kid_std = kid_from_features(fake, real, kid_subsets, subset_size, seed, device)
    low, high = fid_bootstrap_interval(fake, real, FID_RESAMPLES, FID_INTERVAL_LEVEL, seed, device)
    values = {
        "fid": fid_from_features(fake, real, device),
        "fid_ci_low": low,
        "fid_ci_high": high,
        "kid": kid,
        "kid_std": kid_std,
    }
    settings = {
        "fid_interval": {
            "method": "bootstrap percentile, centred on the FID (fid_bootstrap_interval)",
            "level": FID_INTERVAL_LEVEL,
            "resamples": FID_RESAMPLES,
            "seed": seed,
        },
        "kid": {"subsets": kid_subsets, "subset_size": subset_size, "seed": seed, "kernel": "polynomial (x.y/d + 1)^3"},
    }
    return values, settings


def compute_fid_kid(
    fake: Iterable[torch.Tensor],
    real: Iterable[torch.Tensor],
    extractor: InceptionFeatures,
    kid_subsets: int = KID_SUBSETS,
    kid_subset_size: int = 1000,
    seed: int = 0,
) -> dict:
    """:func:`distances` between generated and real images (batches in [-1, 1]), with what they were measured on.

    The generated images are scored as given: round them first (alap.metrics.pixel.round_to_8bit) to score them
    as saved 8-bit images are.
    """
    fake_features, fake_size = _collect(extractor, fake, "fake")
    real_features, real_size = _collect(extractor, real, "real")
    values, settings = distances(fake_features, real_features, kid_subset_size, kid_subsets, seed, extractor.device)
    return {
        **values,
        "provenance": {
            "extractor": "pytorch-fid InceptionV3 pool3 (input resized to 299x299 bilinear)",
            "pytorch_fid_version": importlib.metadata.version("pytorch-fid"),
            "weights": extractor.provenance,
            "feature_dim": FEATURE_DIM,
            "n_fake": len(fake_features),
            "n_real": len(real_features),
            "image_size_fake": fake_size,
            "image_size_real": real_size,
            **settings,
        },
    }
