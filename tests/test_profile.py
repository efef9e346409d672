"""Device profiling: device specs, ONNX export and equality, latency metrics, roofline, whole profile."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from alap.models.arch import build_generator, default_arch
from alap.profile.devices import DeviceUnavailable, available_devices, cpu_cores, parse_device
from alap.profile.export import OnnxMismatch, check_onnx, export_onnx
from alap.profile.latency import flatten_latency, latency_metric_names, measure_latency, profile_model
from alap.profile.roofline import achieved_fraction, count_gmacs, device_peak_gflops


class TinyUNet(nn.Module):
    """A two-level U-Net in the pix2pix style: reflection pad, instance/batch norm, transposed conv, skip concat."""

    def __init__(self, ngf: int = 8) -> None:
        super().__init__()
        self.inc = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(3, ngf, 3), nn.InstanceNorm2d(ngf), nn.LeakyReLU(0.2))
        self.down = nn.Sequential(nn.Conv2d(ngf, 2 * ngf, 4, 2, 1), nn.BatchNorm2d(2 * ngf), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * ngf, ngf, 4, 2, 1), nn.InstanceNorm2d(ngf, affine=True), nn.ReLU()
        )
        self.out = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(2 * ngf, 3, 3), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.inc(x)
        return self.out(torch.cat([skip, self.up(self.down(skip))], dim=1))


def _trained_looking(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine params, so a wrong export of either shows up."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, 16, 16) * 2 + 0.5)
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


# ---- devices ---------------------------------------------------------------------------------------------


def test_parse_device_accepts_canonical_specs():
    one = parse_device("cpu-t1")
    assert (one.name, one.kind, one.threads) == ("cpu-t1", "cpu", 1)
    assert parse_device(f"cpu-t{cpu_cores()}").threads == cpu_cores()


@pytest.mark.parametrize("bad", ["gpu", "cpu", "cpu-t", "cpu-tall", "cpu-t0", "cuda", "cuda:0", "CPU-T1", ""])
def test_parse_device_rejects_malformed_specs(bad):
    with pytest.raises(ValueError, match="device spec"):
        parse_device(bad)


def test_parse_device_refuses_more_threads_than_cores():
    with pytest.raises(DeviceUnavailable, match=f"{cpu_cores()} core"):
        parse_device(f"cpu-t{cpu_cores() + 1}")


def test_cuda_spec_without_cuda_is_unavailable(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # fault injection
    with pytest.raises(DeviceUnavailable, match="CUDA"):
        parse_device("cuda0")
    usable, skipped = available_devices(["cpu-t1", "cuda0", "cpu-t1", f"cpu-t{cpu_cores() + 1}"])
    assert [d.name for d in usable] == ["cpu-t1"]
    assert set(skipped) == {"cuda0", f"cpu-t{cpu_cores() + 1}"}
    assert "CUDA" in skipped["cuda0"]


def test_available_devices_raises_on_typos():
    with pytest.raises(ValueError, match="cpu_t1"):
        available_devices(["cpu-t1", "cpu_t1"])


# ---- export ----------------------------------------------------------------------------------------------


def test_export_dynamic_batch_matches_pytorch(tmp_path):
    model = _trained_looking(TinyUNet(ngf=8)).train()  # export must use eval mode and then restore train mode
    path = export_onnx(model, tmp_path / "g.onnx", (1, 3, 16, 16))
    assert model.training
    assert path.is_file() and not list(tmp_path.glob(".*.tmp"))
    for batch in (1, 3):
        diff = check_onnx(model, path, torch.randn(batch, 3, 16, 16))
        assert diff < 1e-4
    assert model.training
    # a different image size is not part of the contract, but batch is: the ORT input is symbolic on axis 0
    (inp,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 16, 16]


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_resnet_generators_export_exactly(tmp_path, upsample):
    """Both ResNet upsamplings (transposed conv, nearest resize + conv) survive the export."""
    arch = default_arch("resnet", 3, 3, ngf=4, n_blocks=1, norm="instance", upsample=upsample)
    model = _trained_looking(build_generator(arch))
    path = export_onnx(model, tmp_path / "g.onnx", (1, 3, 16, 16))
    assert check_onnx(model, path, torch.randn(2, 3, 16, 16)) < 1e-4


def test_static_batch_export_rejects_other_batches(tmp_path):
    model = _trained_looking(TinyUNet(ngf=4))
    path = export_onnx(model, tmp_path / "static.onnx", (2, 3, 16, 16), dynamic_batch=False)
    assert check_onnx(model, path, torch.randn(2, 3, 16, 16)) < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        session.run(None, {"input": np.zeros((3, 3, 16, 16), np.float32)})


def test_check_onnx_catches_a_model_that_changed(tmp_path):
    model = _trained_looking(TinyUNet(ngf=4))
    path = export_onnx(model, tmp_path / "g.onnx", (1, 3, 16, 16))
    with torch.no_grad():
        model.down[1].running_mean += 0.5  # the exported file no longer computes what the model computes
    with pytest.raises(OnnxMismatch, match="max abs"):
        check_onnx(model, path, torch.randn(2, 3, 16, 16))


def test_export_rejects_bad_shape(tmp_path):
    with pytest.raises(ValueError, match="input_shape"):
        export_onnx(TinyUNet(4), tmp_path / "g.onnx", (3, 16, 16))
    assert not (tmp_path / "g.onnx").exists()


# ---- latency ---------------------------------------------------------------------------------------------


def test_metric_names_are_exactly_the_design_keys():
    assert latency_metric_names("cpu-t1", "torch", 1) == (
        "latency.cpu-t1.torch.bs1.p50_ms",
        "latency.cpu-t1.torch.bs1.p90_ms",
    )
    records = [
        {"device": "cpu-t2", "backend": "onnxruntime", "batch_size": 4, "p50_ms": 1.5, "p90_ms": 2.0},
        {"device": "cuda0", "backend": "torch", "batch_size": 1, "p50_ms": 0.25, "p90_ms": 0.5},
    ]
    assert flatten_latency(records) == {
        "latency.cpu-t2.onnxruntime.bs4.p50_ms": 1.5,
        "latency.cpu-t2.onnxruntime.bs4.p90_ms": 2.0,
        "latency.cuda0.torch.bs1.p50_ms": 0.25,
        "latency.cuda0.torch.bs1.p90_ms": 0.5,
    }
    with pytest.raises(ValueError, match="backend"):
        latency_metric_names("cpu-t1", "tensorrt", 1)


def test_measure_latency_repeats_restores_state_and_reports(tmp_path):
    model = TinyUNet(ngf=4).train()
    torch.set_num_threads(cpu_cores())
    rec = measure_latency(model, "cpu-t1", "torch", 2, (3, 16, 16), warmup=1, min_repeats=5, min_seconds=0.15)
    assert torch.get_num_threads() == cpu_cores() and model.training
    assert rec["n_repeats"] >= 5 and rec["n_repeats"] * rec["mean_ms"] >= 150 * 0.9
    assert 0 < rec["p50_ms"] <= rec["p90_ms"]
    assert rec["images_per_s"] == pytest.approx(2000.0 / rec["mean_ms"])
    assert (rec["device"], rec["backend"], rec["batch_size"], rec["threads"]) == ("cpu-t1", "torch", 2, 1)


def test_measure_latency_rejects_wrong_inputs(tmp_path):
    with pytest.raises(TypeError, match="nn.Module"):
        measure_latency(tmp_path / "g.onnx", "cpu-t1", "torch", 1, (3, 8, 8))
    with pytest.raises(TypeError, match="ONNX"):
        measure_latency(TinyUNet(4), "cpu-t1", "onnxruntime", 1, (3, 8, 8))
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        measure_latency(tmp_path / "missing.onnx", "cpu-t1", "onnxruntime", 1, (3, 8, 8))
    with pytest.raises(ValueError, match="backend"):
        measure_latency(TinyUNet(4), "cpu-t1", "tvm", 1, (3, 8, 8))
    with pytest.raises(ValueError, match="batch_size"):
        measure_latency(TinyUNet(4), "cpu-t1", "torch", 0, (3, 8, 8))


def test_bigger_model_has_larger_median_latency():
    # ~60x the MACs; the assertion asks for only 2x so a busy machine cannot flip it
    kwargs = dict(warmup=2, min_repeats=15, min_seconds=0.0)
    small = measure_latency(TinyUNet(ngf=4), "cpu-t1", "torch", 1, (3, 64, 64), **kwargs)
    big = measure_latency(TinyUNet(ngf=32), "cpu-t1", "torch", 1, (3, 64, 64), **kwargs)
    assert big["p50_ms"] > 2 * small["p50_ms"]


def test_torch_cpu_peak_memory_counts_live_tensors_exactly():
    # weights + input stay resident; a1 and a2 are both alive while the second conv writes a2, then a1 dies
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 3, 1))
    weights = sum(p.numel() for p in model.parameters()) * 4
    image, act = 3 * 32 * 32 * 4, 8 * 32 * 32 * 4
    rec = measure_latency(model, "cpu-t1", "torch", 1, (3, 32, 32), warmup=1, min_repeats=2, min_seconds=0.0)
    assert rec["peak_mem_method"] == "live_tensor_peak"
    assert rec["peak_mem_mb"] * 2**20 == weights + image + 2 * act


def test_onnxruntime_cpu_peak_memory_is_positive(tmp_path):
    # a 1x1 conv to 128 channels at 256x256 must hold a 32 MiB output somewhere
    model = nn.Conv2d(3, 128, 1)
    path = export_onnx(model, tmp_path / "c.onnx", (1, 3, 256, 256))
    rec = measure_latency(path, "cpu-t1", "onnxruntime", 1, (3, 256, 256), warmup=1, min_repeats=2, min_seconds=0.0)
    assert rec["peak_mem_method"] == "fresh_process_rss_hwm"
    assert rec["peak_mem_mb"] > 32


# ---- roofline and whole profile ---------------------------------------------------------------------------


def test_achieved_fraction_arithmetic():
    # 1 GMAC/image x 2 images = 4 GFLOP in 10 ms = 400 GFLOP/s, which is all of a 400 GFLOP/s peak
    assert achieved_fraction(1.0, 10.0, 2, 400.0) == pytest.approx(1.0)
    assert achieved_fraction(0.5, 10.0, 1, 1000.0) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="latency_ms"):
        achieved_fraction(1.0, 0.0, 1, 100.0)


def test_count_gmacs_charges_transposed_convs_what_they_compute():
    # conv: out elements x in_c x k*k; transposed: in elements x out_c x k*k (not x4 as thop-style counters do)
    assert count_gmacs(nn.Conv2d(3, 8, 3, padding=1), (3, 16, 16)) * 1e9 == 8 * 16 * 16 * 3 * 9
    assert count_gmacs(nn.ConvTranspose2d(8, 4, 4, 2, 1), (8, 8, 8)) * 1e9 == 8 * 8 * 8 * 4 * 16
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    assert count_gmacs(grouped, (4, 8, 8)) * 1e9 == 4 * 8 * 8 * 9 + 256 * 10


def test_onnx_models_declare_the_ir_their_opset_needs(tmp_path, monkeypatch):
    """An onnxruntime a release behind the onnx package refuses that package's newest IR (onnxruntime 1.30 refused
    IR 14 on the GPU machine), so every model the profiler builds declares the lowest IR its opsets allow."""
    import onnx

    from alap.profile import roofline

    built = []
    real_session = roofline.ort_session
    monkeypatch.setattr(roofline, "ort_session", lambda model, spec: built.append(model) or real_session(model, spec))
    roofline._ort_kernels(parse_device("cpu-t1"))
    exported = export_onnx(TinyUNet(ngf=4), tmp_path / "m.onnx", (1, 3, 16, 16))
    models = [onnx.load_from_string(model) for model in built] + [onnx.load(exported)]
    assert len(models) == 3
    assert all(m.ir_version == onnx.helper.find_min_ir_version_for(list(m.opset_import)) for m in models)


def test_profile_model_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # same result on GPU machines
    model = _trained_looking(TinyUNet(ngf=4))
    too_many = f"cpu-t{cpu_cores() + 1}"
    result = profile_model(
        model,
        (3, 16, 16),
        ["cpu-t1", "cuda0", too_many],
        ["torch", "onnxruntime"],
        [1, 2],
        onnx_dir=tmp_path,
        warmup=1,
        min_repeats=3,
        min_seconds=0.0,
        name="tiny",
        progress=False,
    )
    expected = {k for be in ("torch", "onnxruntime") for bs in (1, 2) for k in latency_metric_names("cpu-t1", be, bs)}
    assert set(result["metrics"]) == expected
    assert all(v > 0 for v in result["metrics"].values())
    assert set(result["skipped"]) == {"cuda0", too_many}
    assert (tmp_path / "tiny.onnx").is_file() and result["onnx_max_abs_diff"] < 1e-4
    assert result["executed_gmacs"] > 0 and len(result["records"]) == 4
    for rec in result["records"]:
        assert 0 < rec["achieved_fraction"] < 1, rec
        assert rec["peak_gflops"] == device_peak_gflops("cpu-t1", rec["backend"])  # cached, same number
