"""bundlenet: Bundle Networks (Courts & Kvinge, ICLR 2022) with PyTorch Lightning and nflows."""

__version__ = "0.2.0"

from bundlenet.api import fit
from bundlenet.bundles import Bundle, BundleSpec, GrowingArc, MoebiusBand, RobotArm, SlicedTorus, TiltedShell, Torus
from bundlenet.models.base import Trivialized
from bundlenet.models.bundlenet import BundleNet

__all__ = [
    "Bundle",
    "BundleNet",
    "BundleSpec",
    "GrowingArc",
    "MoebiusBand",
    "RobotArm",
    "SlicedTorus",
    "TiltedShell",
    "Torus",
    "Trivialized",
    "__version__",
    "fit",
]
