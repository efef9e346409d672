"""One task's wiring: its data, its channel counts, its teacher architecture and its training objective.

Stages and flows ask this module "what does task X need", so the mapping from params.yaml to datasets and
networks exists once.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from alap.config import ModelParams, Params, TaskParams, TrainParams
from alap.data.datasets import channels, open_dataset
from alap.models import default_arch


@dataclass(frozen=True)
class Task:
    name: str
    params: TaskParams
    image_size: int  # whole images: validation, evaluation, profiling
    crop_size: int  # training crops (= image_size when the task does not crop)
    seed: int
    train: TrainParams  # the shared train section with this task's overrides applied

    @classmethod
    def from_params(cls, params: Params, name: str) -> "Task":
        if name not in params.tasks:
            raise ValueError(f"unknown task {name!r}; params.yaml defines {sorted(params.tasks)}")
        return cls(name=name, params=params.tasks[name], image_size=params.load_size(name),
                   crop_size=params.crop_size(name), seed=params.seed, train=params.train_for(name))

    @property
    def channels(self) -> tuple[int, int]:
        return channels(self.params.layout, self.params.num_classes)

    @property
    def objective_kind(self) -> str:
        """pix2pix for paired data, CycleGAN for unpaired, and for inputs alone the teacher's own outputs."""
        if not self.params.has_targets:
            return "teacher"
        return "pix2pix" if self.params.paired else "cycle"

    def dataset(self, split: str, for_eval: bool = False) -> Dataset:
        crop = self.crop_size if self.crop_size < self.image_size else None
        return open_dataset(self.params.layout, self.params.root, split, self.image_size,
                            num_classes=self.params.num_classes, seed=self.seed, for_eval=for_eval, crop_size=crop)

    def teacher_arch(self, model: ModelParams) -> dict:
        """The arch of the teacher to train (tasks with a teacher file read theirs from the file)."""
        if self.params.arch is None:
            raise ValueError(f"tasks.{self.name} imports its teacher from {self.params.teacher.checkpoint}; "
                             "it has no teacher to train")
        input_nc, output_nc = self.channels
        if self.params.arch == "unet":
            m = model.unet
            return default_arch("unet", input_nc, output_nc, ngf=m.ngf, norm=m.norm, dropout=m.dropout,
                                num_downs=m.num_downs)
        r = model.resnet
        return default_arch("resnet", input_nc, output_nc, ngf=r.ngf, norm=r.norm, dropout=r.dropout,
                            n_blocks=r.n_blocks)
