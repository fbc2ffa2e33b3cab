"""Bundles: a base class and the synthetic bundles of the paper."""

from bundlenet.bundles.base import Bundle, BundleSamples, BundleSpec, check_points
from bundlenet.bundles.moebius import MoebiusBand
from bundlenet.bundles.torus import SlicedTorus, Torus

__all__ = ["Bundle", "BundleSamples", "BundleSpec", "MoebiusBand", "SlicedTorus", "Torus", "check_points"]
