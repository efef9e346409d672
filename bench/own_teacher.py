"""The input of reports/own_generator.md: a paired 256-px image folder (train/test, no val) and a generator in the
reference pix2pix/CycleGAN layout (``resnet_9blocks``, ngf 64, InstanceNorm), trained briefly on 128-px random crops
and saved as a bare state dict, as the reference code base saves ``latest_net_G.pth``.

    python bench/own_teacher.py OUT_DIR STEPS   # then: alap compress OUT_DIR/latest_net_G.pth --data OUT_DIR/faces ...
"""

import shutil
import sys
import time
from pathlib import Path

import torch

from alap.config import TrainParams
from alap.data.datasets import PairedFolder
from alap.data.synthetic import generate_task
from alap.models import NLayerDiscriminator, build_generator, default_arch
from alap.objectives import make_objective


def main(out: Path, steps: int) -> None:
    data = out / "faces"
    if not data.exists():
        generate_task("face2cartoon", data, 256, 72, 1, 16, seed=0)
        shutil.rmtree(data / "val")  # as users have it: train and test only
    torch.manual_seed(0)
    generator = build_generator(default_arch("resnet", 3, 3, ngf=64, norm="instance", n_blocks=9))
    discriminator = NLayerDiscriminator(6, ndf=64, n_layers=3, norm="instance")
    objective = make_objective("pix2pix", generator, {"D": discriminator}, TrainParams(lr=2e-4, beta1=0.5))
    train = PairedFolder(data, "train", 256)
    draw = torch.Generator().manual_seed(0)
    objective.train()
    started = time.time()
    for step in range(steps):
        item = train[int(torch.randint(len(train), (1,), generator=draw))]
        y, x = torch.randint(0, 129, (2,), generator=draw).tolist()
        losses = objective.step({k: item[k][None, :, y : y + 128, x : x + 128] for k in ("A", "B")})
        if step % 25 == 0:
            print(step, {k: round(v, 3) for k, v in losses.items()}, f"{time.time() - started:.0f}s", flush=True)
    torch.save(generator.state_dict(), out / "latest_net_G.pth")
    print("saved", out / "latest_net_G.pth")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
