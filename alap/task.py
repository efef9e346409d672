"""One task's wiring: its data, its channel counts, its teacher architecture and its training objective.

Stages and flows ask this module "what does task X need", so the mapping from params.yaml to datasets and
networks exists once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from alap.compress.params import CondenseParams
from alap.config import ModelParams, Params, TaskParams, TrainParams
from alap.data.datasets import channels, open_dataset
from alap.models import arch_of, default_arch, load_checkpoint


@dataclass(frozen=True)
class Task:
    name: str
    params: TaskParams
    image_size: int  # whole images: validation, evaluation, profiling
    crop_size: int  # training crops (= image_size when the task does not crop)
    seed: int
    train: TrainParams  # the shared train section with this task's overrides applied
    condense: CondenseParams  # the same for the condense section

    @classmethod
    def from_params(cls, params: Params, name: str) -> Task:
        if name not in params.tasks:
            raise ValueError(f"unknown task {name!r}; params.yaml defines {sorted(params.tasks)}")
        return cls(
            name=name,
            params=params.tasks[name],
            image_size=params.load_size(name),
            crop_size=params.crop_size(name),
            seed=params.seed,
            train=params.train_for(name),
            condense=params.condense_for(name),
        )

    @property
    def channels(self) -> tuple[int, int]:
        return channels(self.params.layout, self.params.num_classes)

    @property
    def objective_kind(self) -> str:
        """pix2pix for paired data, CycleGAN for unpaired, and for inputs alone the teacher's own outputs."""
        if not self.params.has_targets:
            return "teacher"
        return "pix2pix" if self.params.paired else "cycle"

    def example_inputs(self, device: torch.device, count: int = 16) -> torch.Tensor:
        """A batch of real validation inputs: traces the graph, probes removed channels, checks outputs."""
        return next(iter(DataLoader(self.dataset("val"), batch_size=count)))["A"].to(device)

    def dataset(self, split: str, for_eval: bool = False) -> Dataset:
        crop = self.crop_size if self.crop_size < self.image_size else None
        return open_dataset(
            self.params.layout,
            self.params.root,
            split,
            self.image_size,
            num_classes=self.params.num_classes,
            seed=self.seed,
            for_eval=for_eval,
            crop_size=crop,
        )

    def load_generator(self, path: Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
        """A checkpoint of this task's generator, refused before any work when it does not fit the params."""
        model, meta = load_checkpoint(path, map_location=map_location, expect_task=self.name)
        self.check_fits(arch_of(model), path)
        return model, meta

    def check_fits(self, arch: dict, source: Path, channels: tuple[int, int] | None = None) -> None:
        """Refuse a generator of another kind than the task's params name, of other channels than its layout
        gives (``channels``: input, output; default the task's A -> B), or of a depth its image sides do not
        divide; the error names the file and the params key."""
        where = f"tasks.{self.name}"
        kind_key, kind = (
            (f"{where}.arch", self.params.arch)
            if self.params.teacher is None
            else (f"{where}.teacher.kind", self.params.teacher.kind)
        )
        if kind is not None and arch["kind"] != kind:
            raise ValueError(f"{source}: holds a {arch['kind']} generator, but {kind_key} is {kind!r}")
        channels = channels or self.channels
        found = (arch["input_nc"], arch["output_nc"])
        if found != channels:
            classes = f" with num_classes {self.params.num_classes}" if self.params.num_classes else ""
            raise ValueError(
                f"{source}: the generator maps {found[0]} to {found[1]} channels, but {where}.layout "
                f"{self.params.layout!r}{classes} needs {channels[0]} to {channels[1]}"
            )
        factor = 2 ** arch["num_downs"] if arch["kind"] == "unet" else 4
        smallest = self.crop_size  # never above image_size (config checks it)
        if smallest % factor:
            raise ValueError(
                f"{source}: a {arch['kind']} generator of this depth needs image sides divisible by "
                f"{factor}; task {self.name!r} uses {smallest}-pixel images ({where}.load_size/"
                "crop_size, default data.image_size)"
            )

    def teacher_arch(self, model: ModelParams) -> dict:
        """The arch of the teacher to train (tasks with a teacher file read theirs from the file)."""
        if self.params.arch is None:
            raise ValueError(
                f"tasks.{self.name} imports its teacher from {self.params.teacher.checkpoint}; "
                "it has no teacher to train"
            )
        input_nc, output_nc = self.channels
        if self.params.arch == "unet":
            m = model.unet
            return default_arch(
                "unet", input_nc, output_nc, ngf=m.ngf, norm=m.norm, dropout=m.dropout, num_downs=m.num_downs
            )
        r = model.resnet
        return default_arch(
            "resnet",
            input_nc,
            output_nc,
            ngf=r.ngf,
            norm=r.norm,
            dropout=r.dropout,
            n_blocks=r.n_blocks,
            upsample=r.upsample,
        )
