"""Baselines of the paper's comparison, each a :class:`~bundlenet.models.base.BundleModel`.

``wgan`` (unconditional WGAN-div), ``cgan`` (conditioned on y), ``cgan_nbhd`` (conditioned on the
nearest cover centre and y), ``cgan_triv`` (the same, trained one neighbourhood at a time) and
``cflow`` (a conditional normalizing flow p(x | y) trained by maximum likelihood), ``cfm``
(conditional flow matching p(x | y), the ``flow_matching`` library) and ``forestflow``
(Forest-Flow: flow matching with boosted trees, the optional ``ForestDiffusion`` package).
"""

from bundlenet.models.baselines.cflow import ConditionalFlow
from bundlenet.models.baselines.cfm import ConditionalFlowMatching
from bundlenet.models.baselines.cgan import CGAN
from bundlenet.models.baselines.cgan_nbhd import NeighbourhoodCGAN
from bundlenet.models.baselines.cgan_triv import TrivializedCGAN
from bundlenet.models.baselines.forestflow import ForestFlow
from bundlenet.models.baselines.gan import GANBaseline
from bundlenet.models.baselines.wgan import WGAN

__all__ = [
    "CGAN",
    "WGAN",
    "ConditionalFlow",
    "ConditionalFlowMatching",
    "ForestFlow",
    "GANBaseline",
    "NeighbourhoodCGAN",
    "TrivializedCGAN",
]
