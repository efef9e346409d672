"""The task losses of the two generator families, as one optimisation step each.

Teacher training and condensing both need "one step of the task's own objective", condensing with a sparsity
penalty added to the generator's loss; so the objective is an object with a ``step`` that accepts that extra term.
- pix2pix (paired): L1 to the target plus a conditional PatchGAN loss.
- CycleGAN (unpaired): adversarial + cycle consistency + identity, with the reverse generator and both
  discriminators kept in ``aux``. The A->B generator is the one alap compresses. As in the reference code, the
  discriminators can learn from a history of generated images (:class:`ImagePool`, ``train.pool_size``). A user
  who imports only the A->B generator has no reverse generator: the cycle term (and the B-side terms) are then
  off, leaving adversarial + identity.
- teacher (input images alone, no targets): L1 to a frozen teacher's output, weighted like pix2pix's L1, so
  condensing a generator nobody has targets for keeps its function while the penalty empties channels.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from alap.dist import replicated
from alap.losses import GANLoss

ExtraLoss = Callable[[nn.Module], torch.Tensor]


class Objective(ABC):
    """Holds the networks and optimisers of one objective; subclasses define ``step``."""

    def __init__(self, generator: nn.Module, aux: dict[str, nn.Module], lr: float, beta1: float, gan_mode: str) -> None:
        self.generator = generator
        self.aux = aux
        self.gan = GANLoss(gan_mode)  # type: ignore[arg-type]
        betas = (beta1, 0.999)
        gen_params = [p for m in [generator, *self._other_generators()] for p in m.parameters()]
        disc_params = [p for m in self._discriminators() for p in m.parameters()]
        self._optimizers = {"opt_G": torch.optim.Adam(gen_params, lr=lr, betas=betas)}
        if disc_params:
            self._optimizers["opt_D"] = torch.optim.Adam(disc_params, lr=lr, betas=betas)
        self.trained = self.modules()  # what a pass that trains a module calls: see distributed()

    def _other_generators(self) -> list[nn.Module]:
        return []

    @abstractmethod
    def _discriminators(self) -> list[nn.Module]: ...

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.generator, **self.aux}

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs besides the batch stream and the schedulers (alap.loop.fit's ``state``)."""
        return {**self.modules(), **self.optimizers()}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self._optimizers

    def train(self) -> None:
        for module in self.modules().values():
            module.train()

    @contextlib.contextmanager
    def distributed(self) -> Iterator[None]:
        """For the block, passes that train a module call its DDP replica (``self.trained``) in a multi-process
        run (alap.dist.replicated); passes through a module frozen for the pass call the module itself."""
        with replicated(self.modules()) as replicas:
            self.trained = replicas
            try:
                yield
            finally:
                self.trained = self.modules()

    @abstractmethod
    def step(self, batch: dict[str, Any], extra_generator_loss: ExtraLoss | None = None) -> dict[str, float]:
        """One discriminator and one generator update; ``extra_generator_loss(G)`` is added to G's loss."""

    def _update_generator(self, loss: torch.Tensor, losses: dict[str, float], extra: ExtraLoss | None) -> None:
        """G's update, with the caller's extra term (condense's sparsity penalty) added and reported as ``penalty``."""
        if extra is not None:
            term = extra(self.generator)
            loss = loss + term
            losses["penalty"] = term.item()
        self._update("opt_G", loss)

    def _update(self, name: str, loss: torch.Tensor) -> None:
        opt = self._optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


class TeacherObjective(Objective):
    """L1 to the output of a frozen ``teacher`` (``aux["T"]``, never optimised); no discriminator."""

    def __init__(
        self, generator: nn.Module, aux: dict[str, nn.Module], lr: float, beta1: float, gan_mode: str, lambda_l1: float
    ) -> None:
        super().__init__(generator, aux, lr, beta1, gan_mode)
        self.lambda_l1 = lambda_l1
        aux["T"].eval().requires_grad_(False)

    def _discriminators(self) -> list[nn.Module]:
        return []

    def modules(self) -> dict[str, nn.Module]:
        return {"G": self.generator}  # the frozen teacher is an input, not training state

    def train(self) -> None:
        self.generator.train()

    def step(self, batch: dict[str, Any], extra_generator_loss: ExtraLoss | None = None) -> dict[str, float]:
        real_a = batch["A"]
        with torch.no_grad():
            target = self.aux["T"](real_a)
        loss_l1 = nn.functional.l1_loss(self.trained["G"](real_a), target)
        loss_g = self.lambda_l1 * loss_l1
        losses = {"G_l1_teacher": loss_l1.item()}
        self._update_generator(loss_g, losses, extra_generator_loss)
        return losses


def _set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for module in modules:
        for p in module.parameters():
            p.requires_grad_(flag)


class Pix2PixObjective(Objective):
    """L1 + conditional GAN (Isola et al. 2017). ``aux`` holds ``D`` (input: condition and image concatenated)."""

    def __init__(
        self,
        generator: nn.Module,
        aux: dict[str, nn.Module],
        lr: float,
        beta1: float,
        gan_mode: str,
        lambda_l1: float,
        lambda_gan: float,
    ) -> None:
        super().__init__(generator, aux, lr, beta1, gan_mode)
        self.lambda_l1 = lambda_l1
        self.lambda_gan = lambda_gan

    def _discriminators(self) -> list[nn.Module]:
        return [self.aux["D"]]

    def step(self, batch: dict[str, Any], extra_generator_loss: ExtraLoss | None = None) -> dict[str, float]:
        real_a, real_b = batch["A"], batch["B"]
        disc, train_disc = self.aux["D"], self.trained["D"]
        fake_b = self.trained["G"](real_a)

        _set_requires_grad([disc], True)
        loss_d = 0.5 * (
            self.gan(train_disc(torch.cat([real_a, fake_b.detach()], 1)), False)
            + self.gan(train_disc(torch.cat([real_a, real_b], 1)), True)
        )
        self._update("opt_D", loss_d)

        _set_requires_grad([disc], False)
        loss_gan = self.gan(disc(torch.cat([real_a, fake_b], 1)), True)
        loss_l1 = nn.functional.l1_loss(fake_b, real_b)
        loss_g = self.lambda_gan * loss_gan + self.lambda_l1 * loss_l1
        losses = {"D": loss_d.item(), "G_gan": loss_gan.item(), "G_l1": loss_l1.item()}
        self._update_generator(loss_g, losses, extra_generator_loss)
        return losses


class ImagePool:
    """The last ``size`` generated images of one domain, from which a discriminator's fakes are drawn (Shrivastava
    et al. 2017; the reference CycleGAN's ``pool_size`` 50). Why: a discriminator that sees only the generator's
    newest output chases it, and the two can oscillate; a history of older fakes keeps it judging what the
    generator produced over many steps. Each fake goes in; with probability 1/2 it is swapped for a random stored
    one. ``size`` 0 passes the fakes through. Resumable: the images are its state, the draws come from torch's
    random state, which alap.loop saves."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        """The batch a discriminator learns from in place of ``fakes`` (detached: no gradient reaches G)."""
        fakes = fakes.detach()
        if self.size == 0:
            return fakes
        self.images = [stored.to(fakes.device) for stored in self.images]  # a resume state loads onto the CPU
        drawn = []
        for image in fakes:
            if len(self.images) < self.size:
                self.images.append(image)
                drawn.append(image)
            elif float(torch.rand(())) < 0.5:
                i = int(torch.randint(self.size, ()))
                drawn.append(self.images[i])
                self.images[i] = image
            else:
                drawn.append(image)
        return torch.stack(drawn)

    def state_dict(self) -> dict[str, Any]:
        return {"images": list(self.images)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.images = list(state["images"])


class CycleObjective(Objective):
    """CycleGAN (Zhu et al. 2017). ``aux`` holds ``G_B`` (B->A), ``D_A`` (judges domain B) and ``D_B`` (domain A),
    following the reference code's naming. Without ``G_B`` only ``D_A`` is needed: adversarial + identity."""

    def __init__(
        self,
        generator: nn.Module,
        aux: dict[str, nn.Module],
        lr: float,
        beta1: float,
        gan_mode: str,
        lambda_cycle: float,
        lambda_identity: float,
        pool_size: int,
    ) -> None:
        super().__init__(generator, aux, lr, beta1, gan_mode)
        self.lambda_cycle = lambda_cycle
        self.lambda_identity = lambda_identity
        self.pools = {"pool_B": ImagePool(pool_size), "pool_A": ImagePool(pool_size)}  # fakes D_A / D_B learn from

    def state(self) -> dict[str, Any]:
        return {**super().state(), **self.pools}

    @property
    def has_reverse(self) -> bool:
        return "G_B" in self.aux

    def _other_generators(self) -> list[nn.Module]:
        return [self.aux["G_B"]] if self.has_reverse else []

    def _discriminators(self) -> list[nn.Module]:
        return [self.aux["D_A"], self.aux["D_B"]] if self.has_reverse else [self.aux["D_A"]]

    def step(self, batch: dict[str, Any], extra_generator_loss: ExtraLoss | None = None) -> dict[str, float]:
        real_a, real_b = batch["A"], batch["B"]
        g_a, d_a = self.trained["G"], self.aux["D_A"]
        g_b, d_b = (self.trained["G_B"], self.aux["D_B"]) if self.has_reverse else (None, None)
        discs = self._discriminators()
        l1 = nn.functional.l1_loss

        fake_b = g_a(real_a)
        fake_a = g_b(real_b) if g_b is not None else None
        _set_requires_grad(discs, False)
        loss_gan = self.gan(d_a(fake_b), True)
        if g_b is not None:
            loss_gan = loss_gan + self.gan(d_b(fake_a), True)
            loss_cycle = l1(g_b(fake_b), real_a) + l1(g_a(fake_a), real_b)
            loss_g = loss_gan + self.lambda_cycle * loss_cycle
            losses = {"G_gan": loss_gan.item(), "G_cycle": loss_cycle.item()}
        else:
            loss_g = loss_gan
            losses = {"G_gan": loss_gan.item()}
        if self.lambda_identity > 0:
            loss_idt = l1(g_a(real_b), real_b)
            if g_b is not None:
                loss_idt = loss_idt + l1(g_b(real_a), real_a)
            loss_g = loss_g + self.lambda_cycle * self.lambda_identity * loss_idt
            losses["G_idt"] = loss_idt.item()
        self._update_generator(loss_g, losses, extra_generator_loss)

        _set_requires_grad(discs, True)
        d_a = self.trained["D_A"]
        loss_d = self.gan(d_a(real_b), True) + self.gan(d_a(self.pools["pool_B"].query(fake_b)), False)
        if g_b is not None:
            d_b = self.trained["D_B"]
            loss_d = loss_d + self.gan(d_b(real_a), True) + self.gan(d_b(self.pools["pool_A"].query(fake_a)), False)
        loss_d = 0.5 * loss_d
        self._update("opt_D", loss_d)
        losses["D"] = loss_d.item()
        return losses


def make_objective(kind: str, generator: nn.Module, aux: dict[str, nn.Module], train: Any) -> Objective:
    """Build the objective for ``kind`` ("pix2pix", "cycle" or "teacher") from a :class:`alap.config.TrainParams`."""
    if kind == "pix2pix":
        return Pix2PixObjective(
            generator, aux, train.lr, train.beta1, train.gan_mode, train.lambda_l1, train.lambda_gan
        )
    if kind == "cycle":
        return CycleObjective(
            generator,
            aux,
            train.lr,
            train.beta1,
            train.gan_mode,
            train.lambda_cycle,
            train.lambda_identity,
            train.pool_size,
        )
    if kind == "teacher":
        return TeacherObjective(generator, aux, train.lr, train.beta1, train.gan_mode, train.lambda_l1)
    raise ValueError(f"objective kind must be 'pix2pix', 'cycle' or 'teacher', got {kind!r}")
