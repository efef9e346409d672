"""What int8 costs a trained student: its int8 ONNX export against its fp32 export on the task's test images.

Latency alone cannot justify int8: an untrained network's near-constant output hides what quantization does to
an image. Here a trained pipeline student is exported (fp32), quantized statically on the task's training inputs
(alap.profile.quantize), and both files are run by ONNX Runtime on the test split, as a deployment would run them.
Both outputs are rounded to 8 bits, as saved images are, before any metric sees them; then, with the project's
metric code and offline weights: FID and KID of each against the real test targets (alap.evaluate's reference
features), LPIPS and PSNR of each against the ground truth, and of the int8 output against the fp32 output (the
cost of quantization alone, apart from the cost of pruning), and the batch-1 p50 of each file on each device.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from alap.config import Params
from alap.evaluate import real_features_cached
from alap.metrics.fid import InceptionFeatures, fid_from_features, kid_from_features
from alap.metrics.lpips_metric import LpipsMetric
from alap.metrics.pixel import PSNR_CAP_DB, psnr, round_to_8bit
from alap.paths import TaskPaths
from alap.profile.devices import ort_session, parse_device
from alap.profile.export import export_onnx
from alap.profile.latency import measure_latency
from alap.profile.quantize import CALIBRATION_IMAGES, calibration_inputs, onnx_outputs, quantize_int8
from alap.task import Task

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8")


def int8_quality(
    params: Params,
    task_name: str,
    model_name: str,
    devices: list[str],
    torch_home: Path,
    models: Path = Path("models"),
    calibration_images: int = CALIBRATION_IMAGES,
    timing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """fp32 and int8 exports of ``models/<task>/<model_name>`` side by side on the task's test split: quality
    (``fid``, ``kid``, ``psnr``, ``lpips`` against the targets) and batch-1 onnxruntime ``p50_ms`` per device for
    each, and ``lpips_vs_fp32``/``psnr_vs_fp32`` of the int8 outputs against the fp32 ones."""
    task = Task.from_params(params, task_name)
    if not task.params.has_targets:
        raise ValueError(f"task {task_name!r} has no real target images to score FID against")
    checkpoint = TaskPaths(task_name, models=models).checkpoint(model_name)
    model, _ = task.load_generator(checkpoint, "cpu")
    model.eval()
    input_nc, _ = task.channels
    shape = (input_nc, task.image_size, task.image_size)
    calibration = calibration_inputs(task, calibration_images)
    test_set = task.dataset("test", for_eval=True)
    inception = InceptionFeatures(torch_home, "cpu")
    lpips = LpipsMetric(params.evaluate.lpips_net, torch_home, "cpu")
    cpu = parse_device("cpu-t2")
    with tempfile.TemporaryDirectory() as scratch:
        files = {"fp32": export_onnx(model, Path(scratch) / "fp32.onnx", (1, *shape))}
        files["int8"] = quantize_int8(files["fp32"], Path(scratch) / "int8.onnx", calibration)
        sessions = {name: ort_session(path, cpu) for name, path in files.items()}
        features: dict[str, list[torch.Tensor]] = {name: [] for name in PRECISIONS}
        scores: dict[str, list[torch.Tensor]] = {
            key: [] for key in ("fp32.psnr", "fp32.lpips", "int8.psnr", "int8.lpips", "psnr_vs_fp32", "lpips_vs_fp32")
        }
        for batch in DataLoader(test_set, batch_size=params.evaluate.batch_size):
            out = {name: round_to_8bit(onnx_outputs(s, batch["A"]).clamp(-1, 1)) for name, s in sessions.items()}
            target = batch["B"].float()
            for name in PRECISIONS:
                features[name].append(inception.features(out[name]))
                scores[f"{name}.psnr"].append(psnr(out[name], target))
                scores[f"{name}.lpips"].append(lpips(out[name], target))
            scores["psnr_vs_fp32"].append(psnr(out["int8"], out["fp32"]).clamp(max=PSNR_CAP_DB))
            scores["lpips_vs_fp32"].append(lpips(out["int8"], out["fp32"]))
        real = real_features_cached(test_set, inception, params.evaluate.batch_size, None)
        result: dict[str, Any] = {
            "task": task_name,
            "model": model_name,
            "checkpoint": str(checkpoint),
            "images": len(test_set),
            "calibration_images": len(calibration),
            "image_size": task.image_size,
        }
        for name in PRECISIONS:
            fake = torch.cat(features[name])
            kid, kid_std = kid_from_features(fake, real, subset_size=min(params.evaluate.kid_subset_size, len(fake)))
            result[name] = {
                "fid": fid_from_features(fake, real),
                "kid": kid,
                "kid_std": kid_std,
                "psnr": _mean(scores[f"{name}.psnr"]),
                "lpips": _mean(scores[f"{name}.lpips"]),
                "p50_ms": {
                    device: measure_latency(
                        files[name], device, "onnxruntime", 1, shape, measure_peak=False, **(timing or {})
                    )["p50_ms"]
                    for device in devices
                },
            }
        result["psnr_vs_fp32"] = _mean(scores["psnr_vs_fp32"])
        result["lpips_vs_fp32"] = _mean(scores["lpips_vs_fp32"])
    log.info(
        "%s/%s int8 vs fp32: FID %.2f vs %.2f, LPIPS to fp32 %.4f, PSNR to fp32 %.1f dB",
        task_name,
        model_name,
        result["int8"]["fid"],
        result["fp32"]["fid"],
        result["lpips_vs_fp32"],
        result["psnr_vs_fp32"],
    )
    return result


def _mean(values: list[torch.Tensor]) -> float:
    return float(torch.cat([v.flatten().double() for v in values]).mean())
