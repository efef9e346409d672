"""Quality and size of one model on a task's whole test split, as docs/architecture.md's metric names.

FID/KID compare generated images with real target-domain images through the reference Inception; LPIPS and
PSNR/SSIM compare with the ground truth (paired tasks, and the hidden ground truth of synthetic horse2zebra);
``lpips_teacher`` and ``psnr_teacher`` compare with the teacher's output, which is what a student is trained to
reproduce. A task of input images alone (layout ``images``) has no real targets: its FID and KID are of the
model's outputs against the teacher's outputs, named ``fid_teacher`` and ``kid_teacher`` so that they are never
mistaken for an FID against real images.

Every generated image (the model's and the teacher's) is rounded to 8 bits before any metric sees it, as saving it
to a PNG would: the standard protocol, and every published number, scores saved images (pytorch-fid reads PNGs).
FID comes with a bootstrap interval and KID with its spread over subsets (alap.metrics.fid.distances).

With ``quantize.int8`` the model's static int8 quantization (alap.profile.quantize, calibrated on the task's first
training inputs) is run by ONNX Runtime on the same test inputs and scored in the same pass by the same code, 8-bit
rounded like every output, under the model's metric names behind ``int8.`` (alap.metrics.names.INT8_PREFIX).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from alap import io
from alap.config import Params
from alap.device import resolve_device
from alap.metrics.cost import count_gmacs, count_params_m
from alap.metrics.fid import InceptionFeatures, dataset_features, distances
from alap.metrics.lpips_metric import LpipsMetric
from alap.metrics.names import INT8_PREFIX
from alap.metrics.pixel import PSNR_CAP_DB, psnr, round_to_8bit, ssim
from alap.profile.devices import cpu_cores, ort_session, parse_device
from alap.profile.quantize import calibration_inputs, export_int8, onnx_outputs
from alap.report.grid import save_grid
from alap.task import Task

log = logging.getLogger(__name__)


_PER_IMAGE = ("lpips", "lpips_teacher", "psnr", "psnr_teacher", "ssim")  # averaged over images, in metrics.json's order


def _mean(values: list[torch.Tensor]) -> float | None:
    return float(torch.cat(values).mean()) if values else None


def _generated(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """What a model's output is scored as: the 8-bit image a PNG of it would hold."""
    return round_to_8bit(model(inputs).clamp(-1, 1))


@torch.no_grad()
def evaluate_model(
    params: Params,
    task_name: str,
    model_name: str,
    checkpoint: Path,
    teacher_checkpoint: Path,
    out_dir: Path,
    torch_home: Path,
    sparsity: float | None = None,
    real_cache: Path | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the test split; write ``out_dir/metrics.json`` and ``out_dir/grid.png``.

    ``real_cache`` holds the Inception features of the real target images, shared by every model of a task
    (computed and written when missing): on a CPU, Inception is the slowest part of an evaluation.
    """
    task = Task.from_params(params, task_name)
    device = resolve_device(params.device)
    model, _ = task.load_generator(checkpoint, device)
    teacher, _ = task.load_generator(teacher_checkpoint, device)
    model.eval()
    teacher.eval()
    test_set = task.dataset("test", for_eval=True)
    inception = InceptionFeatures(torch_home, device)
    lpips = LpipsMetric(params.evaluate.lpips_net, torch_home, device)
    size = task.image_size
    input_nc, _ = task.channels

    with tempfile.TemporaryDirectory() as scratch:  # the int8 file, where quantize.int8 asks for one
        # Each scored generator by its metric names' prefix: the model, and with quantize.int8 its int8 export.
        generators = {"": lambda inputs: _generated(model, inputs)}
        int8_record: dict[str, Any] = {}
        if params.quantize.int8:
            calibration = calibration_inputs(task)
            int8_file = export_int8(model, (input_nc, size, size), calibration, Path(scratch) / "int8.onnx")
            session = ort_session(int8_file, parse_device(f"cpu-t{cpu_cores()}"))
            generators[INT8_PREFIX] = lambda inputs: round_to_8bit(onnx_outputs(session, inputs).clamp(-1, 1))
            int8_record = {
                "int8": "static QDQ int8 (alap.profile.quantize) run by onnxruntime on the CPU",
                "int8_calibration_images": len(calibration),
            }
        against_teacher = not task.params.has_targets
        fake_features: dict[str, list[torch.Tensor]] = {prefix: [] for prefix in generators}
        teacher_features = []
        scores = {prefix: {name: [] for name in _PER_IMAGE} for prefix in generators}
        labels = ["input", "teacher", model_name, *(["target"] if task.params.has_targets else [])]
        grid: list[list[torch.Tensor]] = [[] for _ in labels]
        shown = 0
        loader = DataLoader(test_set, batch_size=params.evaluate.batch_size)
        for batch in tqdm(
            loader, desc=f"evaluate {task_name}/{model_name}", dynamic_ncols=True, mininterval=2.0, disable=None
        ):
            inputs = batch["A"].to(device)
            reference = _generated(teacher, inputs)
            if against_teacher:
                teacher_features.append(inception.features(reference))
            target = batch.get("B")
            target = None if target is None else target.to(device)
            for prefix, generate in generators.items():
                fake = generate(inputs)
                fake_features[prefix].append(inception.features(fake))
                scored = scores[prefix]
                scored["lpips_teacher"].append(lpips(fake, reference).cpu())
                scored["psnr_teacher"].append(psnr(fake, reference).clamp(max=PSNR_CAP_DB).cpu())
                if target is not None:
                    scored["lpips"].append(lpips(fake, target).cpu())
                    scored["psnr"].append(psnr(fake, target).cpu())
                    scored["ssim"].append(ssim(fake, target).cpu())
                if prefix == "" and shown < params.evaluate.grid_rows:
                    take = slice(0, params.evaluate.grid_rows - shown)
                    for column, images in zip(grid, [inputs, reference, fake, target]):  # no target: three columns
                        column.append(images[take].cpu())
                    shown += inputs[take].shape[0]

    if against_teacher:
        real_features, suffix = torch.cat(teacher_features), "_teacher"
    else:
        real_features = real_features_cached(test_set, inception, params.evaluate.batch_size, real_cache)
        suffix = ""
    measured: dict[str, Any] = {}
    for prefix, features in fake_features.items():  # per generator: distances, then the per-image scores
        values, settings = distances(torch.cat(features), real_features, params.evaluate.kid_subset_size, device=device)
        measured.update({f"{prefix}{name}{suffix}": value for name, value in values.items()})
        measured.update({f"{prefix}{name}": _mean(per_image) for name, per_image in scores[prefix].items()})
    metrics: dict[str, Any] = {
        "task": task_name,
        "model": model_name,
        "sparsity": sparsity,
        **measured,
        "gmacs": count_gmacs(model, (1, input_nc, size, size)),
        "params_m": count_params_m(model),
        "measured_on": {
            "image_size": size,
            "samples": sum(len(f) for f in fake_features[""]),
            "real_samples": len(real_features),
            "fid_reference": "teacher outputs" if against_teacher else "real target-domain test images",
            "generated_images": "rounded to 8 bits before every metric, as saved PNGs are",
            **settings,
            "split": "test",
            "device": str(device),
            "weights": {"fid": inception.provenance, "lpips": lpips.provenance},
            **int8_record,
        },
    }
    save_grid([torch.cat(c) for c in grid], labels, out_dir / "grid.png")
    io.write_json(out_dir / "metrics.json", metrics)
    log.info(
        "%s/%s: fid%s %.2f [%.2f, %.2f], lpips %s, psnr %s, psnr_teacher %.2f, %.3f GMACs",
        task_name,
        model_name,
        suffix,
        metrics[f"fid{suffix}"],
        metrics[f"fid_ci_low{suffix}"],
        metrics[f"fid_ci_high{suffix}"],
        metrics["lpips"],
        metrics["psnr"],
        metrics["psnr_teacher"],
        metrics["gmacs"],
    )
    if INT8_PREFIX in generators:
        log.info(
            "%s/%s in int8: fid%s %.2f, lpips_teacher %.4f, psnr_teacher %.2f",
            task_name,
            model_name,
            suffix,
            metrics[f"{INT8_PREFIX}fid{suffix}"],
            metrics[f"{INT8_PREFIX}lpips_teacher"],
            metrics[f"{INT8_PREFIX}psnr_teacher"],
        )
    return metrics


def real_features_cached(
    test_set: Dataset, inception: InceptionFeatures, batch_size: int, cache: Path | None
) -> torch.Tensor:
    """Inception features of the real target-domain test images (domain B for unpaired tasks), from ``cache``
    when it was made from the same images with the same weights."""
    real_set = test_set.real_targets()
    digest = hashlib.sha256()
    for batch in DataLoader(real_set, batch_size=batch_size):
        digest.update(batch["B"].numpy().tobytes())
    stamp = {"images_sha256": digest.hexdigest(), "weights": json.dumps(inception.provenance, sort_keys=True)}
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved["stamp"] == stamp:
            return saved["features"]
        log.info("real-feature cache %s is stale (other images or weights); recomputing", cache)
    feats = dataset_features(inception, real_set, "B", batch_size, "real")
    if cache is not None:
        io.torch_save({"stamp": stamp, "features": feats}, cache)
    return feats
