"""Issue 15's horse2zebra diagnosis: train the CycleGAN teacher as `train@horse2zebra` does and record why it
does (not) learn: every loss term per step, the discriminators' patch accuracy and separate real/fake losses,
and at checkpoints the test FID/KID against real B images, LPIPS and PSNR to the hidden striped ground truth.

    python scripts/h2z_diagnose.py OUT_DIR [KEY=VALUE ...]   # keys of params.yaml, e.g. tasks.horse2zebra.train.lr=2e-4

Reads params.yaml (with the overrides) and data/horse2zebra (`dvc repro data@horse2zebra`, or
alap.data.synthetic.generate_task); writes OUT_DIR/curves.json (losses, probes, evaluations), OUT_DIR/curves.png
and OUT_DIR/grid.png (input | teacher | hidden ground truth).
"""

import json
import sys
import time
from pathlib import Path

import matplotlib
import torch
import yaml
from torch.utils.data import DataLoader

from alap.config import Params
from alap.data.batches import endless_batches
from alap.metrics.baselines import fid_of_identity
from alap.metrics.fid import InceptionFeatures, fid_from_features, kid_from_features
from alap.metrics.lpips_metric import LpipsMetric
from alap.metrics.pixel import psnr
from alap.objectives import make_objective
from alap.report.grid import save_grid
from alap.seeding import seeded
from alap.task import Task
from alap.train import build_gan, linear_decay

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TASK = "horse2zebra"
PROBE_EVERY = 10


def load_params(overrides: list[str]) -> Params:
    raw = yaml.safe_load(open("params.yaml"))
    raw["dvc"] = None
    for item in overrides:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = raw
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = yaml.safe_load(value)
    return Params.model_validate(raw)


@torch.no_grad()
def probe(objective, batch) -> dict[str, float]:
    """Each discriminator's mean patch score and accuracy (real > 0.5, fake < 0.5) on this batch."""
    g_a, (g_b, d_a, d_b) = objective.generator, (objective.aux[k] for k in ("G_B", "D_A", "D_B"))
    out = {}
    for name, disc, real, fake in (
        ("D_A", d_a, batch["B"], g_a(batch["A"])),
        ("D_B", d_b, batch["A"], g_b(batch["B"])),
    ):
        score_real, score_fake = disc(real), disc(fake)
        out[f"{name}_real"] = float(score_real.mean())
        out[f"{name}_fake"] = float(score_fake.mean())
        out[f"{name}_acc"] = float(0.5 * ((score_real > 0.5).float().mean() + (score_fake < 0.5).float().mean()))
    return out


@torch.no_grad()
def evaluate(generator, test_set, inception, lpips, real_features) -> dict[str, float]:
    was_training = generator.training
    generator.eval()
    feats, lp, ps = [], [], []
    for b in DataLoader(test_set, batch_size=16):
        fake = generator(b["A"]).clamp(-1, 1)
        fake = torch.round((fake + 1) * 127.5) / 127.5 - 1  # 8-bit, as saved images
        feats.append(inception.features(fake))
        lp.append(lpips(fake, b["B"]).cpu())
        ps.append(psnr(fake, b["B"]).cpu())
    generator.train(was_training)
    fake_features = torch.cat(feats)
    kid, kid_std = kid_from_features(fake_features, real_features, subset_size=min(50, len(fake_features)))
    return {
        "fid": fid_from_features(fake_features, real_features),
        "kid": kid,
        "lpips": float(torch.cat(lp).mean()),
        "psnr": float(torch.cat(ps).mean()),
    }


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    params = load_params(sys.argv[2:])
    task = Task.from_params(params, TASK)
    settings = task.train
    device = torch.device("cpu")
    with seeded(params.seed):
        generator, arch, aux = build_gan(task, params, device)
    objective = make_objective(task.objective_kind, generator, aux, settings)
    schedulers = linear_decay(objective, settings.steps, settings.lr_decay_from)
    batches = endless_batches(task.dataset("train"), settings.batch_size, params.seed, device)
    test_set = task.dataset("test", for_eval=True)
    inception = InceptionFeatures(Path(".torch"), device)
    lpips = LpipsMetric(params.evaluate.lpips_net, Path(".torch"), device)
    real_features = torch.cat([inception.features(b["B"]) for b in DataLoader(test_set.real_targets(), 16)])
    identity = fid_of_identity(task, inception, params.evaluate.kid_subset_size)
    baseline = {
        "fid_identity": identity["fid_identity"],
        "kid_identity": identity["kid_identity"],
        "lpips_identity": float(torch.cat([lpips(b["A"], b["B"]).cpu() for b in DataLoader(test_set, 16)]).mean()),
        "psnr_identity": float(torch.cat([psnr(b["A"], b["B"]) for b in DataLoader(test_set, 16)]).mean()),
    }
    print(json.dumps({"settings": settings.model_dump(), "baseline": baseline}), flush=True)
    eval_every = max(settings.steps // 4, 1)
    history, probes, evals = [], [], []
    started, train_s = time.perf_counter(), 0.0
    objective.train()
    for i in range(settings.steps):
        batch = next(batches)
        if i % PROBE_EVERY == 0:
            probes.append({"step": i, **probe(objective, batch)})
        t0 = time.perf_counter()
        losses = objective.step(batch)
        for s in schedulers.values():
            s.step()
        train_s += time.perf_counter() - t0
        history.append({"step": i, **losses})
        if (i + 1) % 25 == 0:
            print(json.dumps({"step": i + 1, "train_s": round(train_s), **losses}), flush=True)
        if (i + 1) % eval_every == 0:
            evals.append({"step": i + 1, **evaluate(generator, test_set, inception, lpips, real_features)})
            print(json.dumps({**evals[-1], "probe": probes[-1]}), flush=True)
            save_test_grid(generator, test_set, out / f"grid_{i + 1}.png")
    result = {
        "overrides": sys.argv[2:],
        "settings": settings.model_dump(),
        "baseline": baseline,
        "train_s": train_s,
        "total_s": time.perf_counter() - started,
        "evals": evals,
        "losses": history,
        "probes": probes,
    }
    (out / "curves.json").write_text(json.dumps(result))
    plot(result, out / "curves.png")


@torch.no_grad()
def save_test_grid(generator, test_set, path: Path) -> None:
    was_training = generator.training
    generator.eval()
    b = next(iter(DataLoader(test_set, batch_size=6)))
    save_grid([b["A"], generator(b["A"]).clamp(-1, 1), b["B"]], ["input", "teacher", "ground truth"], path)
    generator.train(was_training)


def smooth(values: list[float], k: int = 20) -> list[float]:
    return [sum(values[max(0, i - k + 1) : i + 1]) / len(values[max(0, i - k + 1) : i + 1]) for i in range(len(values))]


def plot(result: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [h["step"] for h in result["losses"]]
    for key in ("G_gan", "G_cycle", "G_idt", "D"):
        if key in result["losses"][0]:
            axes[0].plot(steps, smooth([h[key] for h in result["losses"]]), label=key)
    axes[0].set_yscale("log")
    axes[0].set_title("losses (unweighted, 20-step mean)")
    pst = [p["step"] for p in result["probes"]]
    for key in ("D_A_real", "D_A_fake", "D_B_real", "D_B_fake", "D_A_acc", "D_B_acc"):
        axes[1].plot(pst, smooth([p[key] for p in result["probes"]], 5), label=key)
    axes[1].set_title("discriminator patch scores / accuracy")
    est = [e["step"] for e in result["evals"]]
    axes[2].plot(est, [e["fid"] for e in result["evals"]], "o-", label="teacher FID")
    axes[2].axhline(result["baseline"]["fid_identity"], color="gray", ls="--", label="identity FID")
    axes[2].set_title("test FID vs real B")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
