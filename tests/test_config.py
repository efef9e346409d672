"""params.yaml validation: every bad input fails before work starts, naming the key path and the expectation."""

from pathlib import Path

import pytest
import yaml

from alap.config import ParamsError, PromoteParams, load_params
from alap.gan_aux import aux_archs
from alap.loop import params_key
from alap.task import Task

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, data) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def demo() -> dict:
    return yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())


@pytest.mark.parametrize("profile", ["demo", "paper"])
def test_ready_profiles_validate(profile):
    params = load_params(ROOT / "configs" / f"{profile}.yaml")
    assert params.profile_name == profile
    assert set(params.run_tasks) <= set(params.tasks)


def test_params_yaml_is_a_valid_profile():
    assert load_params(ROOT / "params.yaml").profile_name in {"demo", "paper"}


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d["train"].update(steps="many"), "train.steps"),
        (lambda d: d["train"].update(stepz=3), "train.stepz"),
        (lambda d: d["train"].update(lr=-1.0), "train.lr"),
        (lambda d: d["sweep"].update(sparsities=[0.5, 1.0]), "sparsity must be in [0, 1)"),
        (lambda d: d["tasks"]["seg2face"].update(arch="vgg"), "tasks.seg2face.arch"),
        (lambda d: d.update(run_tasks=["seg2face", "cityscapes"]), "cityscapes"),
        (lambda d: d["tasks"].update(cityscapes={"layout": "paired", "root": "x", "arch": "unet"}), "built-in task"),
        (lambda d: d["data"].update(image_size=100), "power of two"),
        (lambda d: d["tasks"]["face2cartoon"].update(num_classes=3), "num_classes"),
        (lambda d: d.pop("sweep"), "sweep"),
        (lambda d: d["model"]["unet"].update(num_downs=7), "num_downs=7"),
        (lambda d: d["tasks"]["seg2face"].update(train={"lambda_l1": 1.0}), "tasks.seg2face.train.lambda_l1"),
        (lambda d: d["tasks"]["seg2face"].update(train={"batch_size": 0}), "tasks.seg2face.train.batch_size"),
        (lambda d: d["prune"].update(sparsity=0.5), "prune.sparsity was removed: each sweep point brings its own"),
        (lambda d: d["distill"].update(w_gan=1.0), "distill.w_gan was removed: renamed distill.lambda_gan"),
        (lambda d: d["tasks"]["seg2face"].update(layout="paired"), "tasks.seg2face.layout: the built-in task"),
        (lambda d: d["tasks"]["seg2face"].update(arch=None), "exactly one of `arch`"),
        (
            lambda d: d["tasks"].update(mine={"source": "folder", "layout": "images", "root": "x", "arch": "unet"}),
            "layout 'images' has no targets to train a teacher on",
        ),
        (lambda d: d.update(run_tasks=["seg2face"]), "dvc: does not match tasks and run_tasks"),
        (lambda d: d["tasks"]["seg2face"].update(crop_size=128), "tasks.seg2face.crop_size (128) must not exceed"),
        (lambda d: d["tasks"]["seg2face"].update(load_size=64, crop_size=96), "its load_size (64"),
        (lambda d: d["promote"].update(max_p50_ms=0), "promote.max_p50_ms"),
        (lambda d: d["promote"].update(max_fid_ratio=float("inf")), "promote.max_fid_ratio"),
        (lambda d: d["promote"].update(device="cpu t2"), "promote.device"),
        (lambda d: d["promote"].update(prefer="size"), "promote.prefer"),
        (lambda d: d["promote"].update(max_p50=33), "promote.max_p50"),
        (lambda d: d["sweep"]["latency"].update(points=["gpu-33ms"]), "expected <device>-<p50>ms"),
        (lambda d: d["sweep"]["latency"].update(points=["cpu-t2-33.0ms"]), "write it 'cpu-t2-33ms'"),
        (lambda d: d["sweep"]["latency"].update(points=["cpu-t2-33ms"] * 2), "points must be distinct"),
        (lambda d: d["sweep"]["latency"].update(backend="tflite"), "sweep.latency.backend"),
        (lambda d: d["sweep"].pop("latency"), "sweep.latency: dvc.yaml iterates sweep.latency.points"),
        (lambda d: d["sweep"]["latency"].pop("points"), "sweep.latency.points: dvc.yaml iterates it"),
        (lambda d: d["sweep"].update(sparsities=[]), "at least one point in sweep.sparsities or sweep.latency.points"),
        (
            lambda d: d["prune"].update(target="latency", latency={"device": "cpu-t2", "p50_ms": 33}),
            "prune.target 'latency' with dvc: dvc.yaml's latency budgets are sweep points: list them in "
            "sweep.latency.points (e.g. 'cpu-t2-33ms')",
        ),
    ],
)
def test_bad_params_name_the_key(tmp_path, mutate, fragment):
    data = demo()
    mutate(data)
    with pytest.raises(ParamsError) as err:
        load_params(write(tmp_path, data))
    assert str(tmp_path / "params.yaml") in str(err.value)
    assert fragment in str(err.value)


def test_task_train_overrides_apply_to_that_task_only(tmp_path):
    data = demo()
    data["tasks"]["horse2zebra"]["train"] = {
        "steps": 123,
        "batch_size": 1,
        "lr": 3e-4,
        "beta1": 0.25,
        "lr_decay_from": 0.9,
        "checkpoint_every": 7,
    }
    data["tasks"]["seg2face"].pop("train", None)
    params = load_params(write(tmp_path, data))
    own, shared = params.train_for("horse2zebra"), params.train_for("seg2face")
    assert (own.steps, own.batch_size, own.lr, own.beta1, own.lr_decay_from) == (123, 1, 3e-4, 0.25, 0.9)
    assert own.checkpoint_every == 7
    assert own.lambda_cycle == shared.lambda_cycle == params.train.lambda_cycle  # everything else is shared
    assert shared == params.train
    # unset, the overrides that came later stay out of the task's dump, so older run keys still match
    assert not {"pool_size", "checkpoint_every"} & set(params.tasks["seg2face"].train.model_dump())


def test_task_discriminator_overrides_apply_to_that_task_only_and_stay_out_of_unset_keys(tmp_path):
    data = demo()
    data["tasks"]["horse2zebra"].pop("discriminator", None)
    before = load_params(write(tmp_path, data))
    data["tasks"]["horse2zebra"]["discriminator"] = {"n_layers": 2}
    params = load_params(write(tmp_path, data))
    own, shared = params.discriminator_for("horse2zebra"), params.discriminator_for("seg2face")
    assert (own.n_layers, own.ndf) == (2, params.model.discriminator.ndf) and shared == params.model.discriminator
    task = Task.from_params(params, "horse2zebra")
    archs = aux_archs(task, task.teacher_arch(params.model), params)
    assert archs["D_A"]["n_layers"] == archs["D_B"]["n_layers"] == 2
    # a task without overrides dumps as before, so the keys of runs made before the setting existed still match
    assert params_key(params.tasks["seg2face"]) == params_key(before.tasks["seg2face"])
    assert "discriminator" not in before.tasks["horse2zebra"].model_dump()


def test_task_condense_overrides_apply_to_that_task_only_and_stay_out_of_unset_keys(tmp_path):
    data = demo()
    data["tasks"]["horse2zebra"].pop("condense", None)
    before = load_params(write(tmp_path, data))
    data["tasks"]["horse2zebra"]["condense"] = {"validate_every": 20}
    params = load_params(write(tmp_path, data))
    own, shared = params.condense_for("horse2zebra"), params.condense_for("seg2face")
    assert own.validate_every == Task.from_params(params, "horse2zebra").condense.validate_every == 20
    assert own.steps == shared.steps == params.condense.steps and shared == params.condense
    # unset, neither the override nor the shared setting enters a dump, so older run keys still match
    seg2face = params_key(params.tasks["seg2face"], params.condense)
    assert seg2face == params_key(before.tasks["seg2face"], before.condense)
    assert "condense" not in before.tasks["horse2zebra"].model_dump()
    assert "validate_every" not in params.condense.model_dump()


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(write(tmp_path, "a: [1,"))
    with pytest.raises(ParamsError, match="mapping"):
        load_params(write(tmp_path, "- 1\n- 2\n"))


def test_builtin_tasks_need_only_their_name(tmp_path):
    data = demo()
    data["tasks"]["seg2face"] = {"arch": "unet"}
    task = load_params(write(tmp_path, data)).tasks["seg2face"]
    assert (task.layout, task.num_classes, str(task.root)) == ("mask_image", 8, "data/seg2face")


def test_promotion_gates_are_one_section_of_every_profile_and_flags_override_them():
    gates = {name: load_params(ROOT / f"{name}.yaml").promote for name in ("params", "configs/demo", "configs/paper")}
    assert gates["params"] == gates["configs/demo"] == gates["configs/paper"] == PromoteParams()
    assert (gates["params"].device, gates["params"].max_p50_ms, gates["params"].max_fid_ratio) == ("cpu-t2", 33.0, 1.1)
    changed = gates["params"].with_overrides(max_p50_ms=20.0, prefer=None, backend="torch")
    assert (changed.max_p50_ms, changed.prefer, changed.backend, changed.max_lpips_teacher) == (
        20.0,
        "quality",
        "torch",
        0.05,
    )
    with pytest.raises(ValueError, match=r"promote.max_lpips_teacher: Input should be greater than 0 \(got -1\)"):
        gates["params"].with_overrides(max_lpips_teacher=-1)
    with pytest.raises(ValueError, match="promote.max_p50: Extra inputs"):
        gates["params"].with_overrides(max_p50=10)


def test_code_defaults_are_the_demo_profile():
    """One profile nobody runs is one too many: a section left out of params.yaml means the demo's settings."""
    from alap.config import Params

    demo_params = load_params(ROOT / "configs" / "demo.yaml")
    defaults = Params.model_validate({k: demo()[k] for k in ("profile_name", "run_tasks", "dvc", "tasks", "sweep")})
    for section in (
        "seed",
        "device",
        "data",
        "model",
        "train",
        "condense",
        "prune",
        "distill",
        "evaluate",
        "profile",
        "promote",
    ):
        assert getattr(defaults, section) == getattr(demo_params, section), section


def test_latency_points_plan_their_own_budget(tmp_path):
    """A sweep of latency points alone is valid; each point prunes to its own budget with the shared backend and
    batch size, the other prune settings kept, and a name outside the sweep is refused."""
    data = demo()
    data["sweep"] = {"sparsities": [], "latency": {"points": ["cpu-t2-0.7ms", "cuda0-2.5ms"], "backend": "torch"}}
    params = load_params(write(tmp_path, data))
    point = params.at_latency_point("cpu-t2-0.7ms").prune
    assert point.target == "latency" and point.sparsity is None and point.min_width == params.prune.min_width
    assert point.latency.model_dump() == {
        "device": "cpu-t2",
        "backend": "torch",
        "batch_size": 1,
        "p50_ms": 0.7,
        "tolerance": 0.05,
    }
    assert params.at_latency_point("cuda0-2.5ms").prune.latency.device == "cuda0"
    assert params.prune.target == "macs"  # the section itself is unchanged
    with pytest.raises(ValueError, match="not in sweep.latency.points"):
        params.at_latency_point("cpu-t1-0.7ms")
