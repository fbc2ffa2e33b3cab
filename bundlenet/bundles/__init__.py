"""Bundles: a base class, the synthetic bundles of the paper, and three with curved, open or 3-dimensional fibers."""

from bundlenet.bundles.arc import GrowingArc
from bundlenet.bundles.arm import RobotArm
from bundlenet.bundles.base import Bundle, BundleSamples, BundleSpec, check_points
from bundlenet.bundles.moebius import MoebiusBand
from bundlenet.bundles.shell import TiltedShell
from bundlenet.bundles.torus import SlicedTorus, Torus

__all__ = [
    "Bundle",
    "BundleSamples",
    "BundleSpec",
    "GrowingArc",
    "MoebiusBand",
    "RobotArm",
    "SlicedTorus",
    "TiltedShell",
    "Torus",
    "check_points",
]
