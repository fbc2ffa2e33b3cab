"""Bundles: a base class, the synthetic bundles of the paper, and two with curved or open fibers."""

from bundlenet.bundles.arc import GrowingArc
from bundlenet.bundles.arm import RobotArm
from bundlenet.bundles.base import Bundle, BundleSamples, BundleSpec, check_points
from bundlenet.bundles.moebius import MoebiusBand
from bundlenet.bundles.torus import SlicedTorus, Torus

__all__ = ["Bundle", "BundleSamples", "BundleSpec", "GrowingArc", "MoebiusBand", "RobotArm", "SlicedTorus", "Torus",
           "check_points"]
