"""What the GAN baselines share: generator, critic, the two losses and manual optimisation."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from typing import Any, Literal, cast

import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import Tensor, nn
from torch.optim.lr_scheduler import LRScheduler

from bundlenet.bundles.base import BundleSpec
from bundlenet.errors import InputError
from bundlenet.models.base import BundleModel, OptimizerFactory, SchedulerFactory

GANLoss = Literal["wgan_div", "lsgan"]


def mlp(in_features: int, out_features: int, hidden_features: int, depth: int) -> nn.Sequential:
    """``in → (hidden, LeakyReLU(0.2)) × depth → out``."""
    layers: list[nn.Module] = []
    width = in_features
    for _ in range(depth):
        layers += [nn.Linear(width, hidden_features), nn.LeakyReLU(0.2)]
        width = hidden_features
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


class GANBaseline(BundleModel):
    r"""A (conditional) GAN on standardised total-space points, conditioned on ``c(y)``.

    Generator :math:`G(z, c)`, :math:`z \sim N(0, I_{d_z})`; critic :math:`D(x, c)`; both are
    LeakyReLU MLPs (the authors' generator also had batch norm, left out here so that sampling
    does not depend on the batch). Subclasses choose the condition :meth:`condition` (empty for
    an unconditional GAN) and may train on sub-batches (:meth:`training_groups`).

    Losses, with :math:`\tilde x = G(z, c)`:

    * ``wgan_div`` (Wu et al. 2018, WGAN-div):
      :math:`L_D = E\,D(\tilde x, c) − E\,D(x, c) + \tfrac{k}{2} E[\|∇_x D(x, c)\|^p + \|∇_{\tilde x} D(\tilde x, c)\|^p]`,
      :math:`L_G = −E\,D(\tilde x, c)`, k = ``div_k``, p = ``div_p`` (2 and 6);
    * ``lsgan`` (Mao et al. 2017, the authors' CGANs):
      :math:`L_D = ½ E[(D(x, c) − 1)^2 + D(\tilde x, c)^2]`, :math:`L_G = E[(D(\tilde x, c) − 1)^2]`.

    Each training step updates the critic once per group and the generator once every
    ``n_critic`` critic updates, with two optimizers built from ``optimizer`` (Lightning manual
    optimisation; gradients clipped to norm ``grad_clip`` when given).
    """

    def __init__(
        self,
        spec: BundleSpec | dict[str, Any],
        latent_dim: int | None = None,
        hidden_features: int = 256,
        depth: int = 3,
        loss: GANLoss = "wgan_div",
        n_critic: int = 1,
        div_k: float = 2.0,
        div_p: float = 6.0,
        grad_clip: float | None = None,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(spec, optimizer, scheduler)
        if loss not in ("wgan_div", "lsgan"):
            raise InputError(f"model.loss must be 'wgan_div' or 'lsgan', got {loss!r}")
        if int(n_critic) < 1:
            raise InputError(f"model.n_critic must be a positive integer, got {n_critic}")
        latent_dim = self.spec.total_dim if latent_dim is None else int(latent_dim)
        if latent_dim < 1:
            raise InputError(f"model.latent_dim must be a positive integer (or null for d_E), got {latent_dim}")
        self.save_options()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.loss_kind: GANLoss = loss
        self.n_critic = int(n_critic)
        self.div_k, self.div_p = float(div_k), float(div_p)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        d_c = self.condition_dim()
        self.generator = mlp(latent_dim + d_c, self.spec.total_dim, int(hidden_features), int(depth))
        self.critic = mlp(self.spec.total_dim + d_c, 1, int(hidden_features), int(depth))
        self._critic_updates = 0

    # ----------------------------------------------------------------- conditioning
    @abstractmethod
    def condition_dim(self) -> int:
        """Width of :meth:`condition`'s output."""

    @abstractmethod
    def condition(self, base: Tensor) -> Tensor:
        """The generator's and critic's condition for base points: ``[N, d_B]`` → ``[N, d_c]``."""

    def training_groups(self, total: Tensor, base: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """Sub-batches of a training batch, one GAN update each (default: the whole batch)."""
        yield total, base

    # ----------------------------------------------------------------- networks
    def _generate_standardised(self, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(cond.shape[0], self.latent_dim, generator=generator, device=cond.device, dtype=cond.dtype)
        return self.generator(torch.cat([z, cond], dim=1))

    def _critic(self, x: Tensor, cond: Tensor) -> Tensor:
        return self.critic(torch.cat([x, cond], dim=1)).squeeze(1)

    def generate(self, base: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.unstandardize(self._generate_standardised(self.condition(base), generator))

    # ----------------------------------------------------------------- losses
    def critic_loss(self, real: Tensor, fake: Tensor, cond: Tensor) -> Tensor:
        """L_D on standardised real and (detached) generated points."""
        if self.loss_kind == "lsgan":
            return 0.5 * ((self._critic(real, cond) - 1).pow(2).mean() + self._critic(fake, cond).pow(2).mean())
        real = real.detach().requires_grad_(True)
        fake = fake.detach().requires_grad_(True)
        d_real, d_fake = self._critic(real, cond), self._critic(fake, cond)
        g_real, g_fake = torch.autograd.grad((d_real.sum(), d_fake.sum()), (real, fake), create_graph=True)
        penalty = g_real.pow(2).sum(1).pow(self.div_p / 2) + g_fake.pow(2).sum(1).pow(self.div_p / 2)
        return d_fake.mean() - d_real.mean() + self.div_k / 2 * penalty.mean()

    def generator_loss(self, fake: Tensor, cond: Tensor) -> Tensor:
        """L_G on standardised generated points."""
        score = self._critic(fake, cond)
        return (score - 1).pow(2).mean() if self.loss_kind == "lsgan" else -score.mean()

    # ----------------------------------------------------------------- training
    def _step(self, optimizer: Any, loss: Tensor, name: str) -> None:
        self.check_loss(loss, f"{name} loss", fix="lower model.optimizer.lr or set model.grad_clip")
        optimizer.zero_grad()
        self.manual_backward(loss)
        if self.grad_clip is not None:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        opt_g, opt_d = cast(list[LightningOptimizer], self.optimizers())  # configure_optimizers returns two
        for total, base in self.training_groups(*batch):
            real, cond = self.standardize(total), self.condition(base)
            fake = self._generate_standardised(cond)
            d_loss = self.critic_loss(real, fake, cond)
            self._step(opt_d, d_loss, "critic")
            self._critic_updates += 1
            self.log("train/critic_loss", d_loss.detach(), batch_size=total.shape[0])
            if (self._critic_updates - 1) % self.n_critic == 0:  # the first update trains both
                g_loss = self.generator_loss(self._generate_standardised(cond), cond)
                self._step(opt_g, g_loss, "generator")
                self.log("train/generator_loss", g_loss.detach(), batch_size=total.shape[0], prog_bar=True)
        schedulers = self.lr_schedulers()
        # step-wise schedulers (built with total_steps), never ReduceLROnPlateau
        stepped: list[LRScheduler] = schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []
        for scheduler in stepped:
            scheduler.step()

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise InputError(
                "no optimizer configured: pass optimizer=functools.partial(torch.optim.Adam, lr=...) (model.optimizer)"
            )
        optimizers = [
            self.optimizer_factory(params=self.generator.parameters()),
            self.optimizer_factory(params=self.critic.parameters()),
        ]
        if self.scheduler_factory is None:
            return optimizers
        total = int(self.trainer.estimated_stepping_batches)
        return optimizers, [self.scheduler_factory(opt, total_steps=total) for opt in optimizers]
