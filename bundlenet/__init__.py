"""bundlenet: Bundle Networks (Courts & Kvinge, ICLR 2022) with PyTorch Lightning and nflows."""

__version__ = "0.1.0"

from bundlenet.bundles import Bundle, BundleSpec, MoebiusBand, SlicedTorus, Torus  # noqa: E402
from bundlenet.models.bundlenet import BundleNet, Trivialized  # noqa: E402

__all__ = ["Bundle", "BundleNet", "BundleSpec", "MoebiusBand", "SlicedTorus", "Torus", "Trivialized", "__version__"]
