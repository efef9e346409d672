"""The built-in synthetic tasks: what each one mirrors in the ALAP-AE paper and how its data is laid out.

params.yaml names a synthetic task by these keys; the layout and channel counts here are the ones
:func:`alap.data.datasets.open_dataset` and :func:`alap.data.datasets.channels` use for its folder.
"""

from __future__ import annotations

from dataclasses import dataclass

from alap.data.faces import NUM_CLASSES


@dataclass(frozen=True)
class TaskInfo:
    """A synthetic task's data contract: folder layout, classes (mask input only), pairing and channels."""

    layout: str
    num_classes: int | None
    paired: bool
    input_nc: int
    output_nc: int
    mirrors: str


SYNTHETIC_TASKS: dict[str, TaskInfo] = {
    "seg2face": TaskInfo(
        layout="mask_image",
        num_classes=NUM_CLASSES,
        paired=True,
        input_nc=NUM_CLASSES,
        output_nc=3,
        mirrors="segmentation mask -> face (CelebAMask-HQ, pix2pix U-Net): an 8-class face parsing mask "
        "(background, skin, hair, eyes, brows, nose, mouth, ears) rendered into a shaded face",
    ),
    "face2cartoon": TaskInfo(
        layout="paired",
        num_classes=None,
        paired=True,
        input_nc=3,
        output_nc=3,
        mirrors="face -> cartoon (paired face/cartoon folders, pix2pix U-Net): a shaded face restyled with "
        "flat region colours and dark outlines",
    ),
    "horse2zebra": TaskInfo(
        layout="unpaired",
        num_classes=None,
        paired=False,
        input_nc=3,
        output_nc=3,
        mirrors="horse -> zebra (CycleGAN, ResNet generator, unpaired): plain-coated animals to striped ones, "
        "with the striped version of each test horse kept aside as hidden ground truth",
    ),
}
