"""Images as a bundle: scikit-learn's 8×8 handwritten digits, over their class or their ink.

The data are the 1797 images of :func:`sklearn.datasets.load_digits` (bundled with
scikit-learn, no download): 64 pixels with integer values 0–16, row by row. Two bundle maps
(``data.base``):

* ``label``: π(x) = the digit class (10 base points). The fiber over 3 is every image of a 3;
  fibers are exact (the held-out images of that class).
* ``ink``: π(x) = Σ pixels, the total ink, a continuous map known for every image. The fiber
  over y is the hyperplane slice {x : Σx = y} of the pixel cube; its empirical sample is the
  ``fiber_neighbours`` held-out images whose ink is nearest to y, and a sample's distance to
  the true fiber is exact (:meth:`DigitsBundle.distance_to_fiber`).

Pixels share one scale (0–16 → 0–10, ``minmax10_shared``), so the geometry of images is kept;
samples come back in pixel units. A fiber spreads along the 61 pixels that vary, less one
direction for the base (``fiber_span`` 60): the 3 pixels that are always 0 and, for ``ink``, the
direction Σx are normal to it. Each pixel column keeps its support: integer values seen in
the data, within 0–16. Held-out images make the fibers (``fiber_source: test``); the noise floor
of a fiber metric is then the same fiber drawn from the *training* images, an independent real
sample (:meth:`~bundlenet.data.tabular.TabularBundle.sample_fiber_floor`).

:meth:`DigitsBundle.fiber_scores` adds the image metrics of the evaluation: a classifier fitted
once on the real training images (a vote of the 10 nearest) says whether generated images look
like their digit (``accuracy``, for ``label``) and how sure it is (``confidence``); for ``ink``, ``ink_error`` is
the mean of |ink(sample) − y| / y; ``image_mmd`` is an MMD whose kernel width is the median
distance between real images of the fiber.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from bundlenet.bundles.base import Units, check_points, check_units
from bundlenet.data.tabular import TabularBundle
from bundlenet.errors import InputError
from bundlenet.geometry import mmd, pairwise_distances

log = logging.getLogger(__name__)

DigitsBase = Literal["label", "ink"]
BASE_CHOICES: tuple[str, ...] = ("label", "ink")
IMAGE_SHAPE = (8, 8)
MAX_PIXEL = 16.0
VOTERS = 10  # neighbours of the classifier's vote


def pixel_names(shape: tuple[int, int] = IMAGE_SHAPE) -> tuple[str, ...]:
    """Column names of an image's pixels, row by row: ``pixel_0_0, pixel_0_1, ...``."""
    return tuple(f"pixel_{r}_{c}" for r in range(shape[0]) for c in range(shape[1]))


class DigitsBundle(TabularBundle):
    """The 8×8 digits over ``base`` (``label`` or ``ink``); see the module docstring.

    Args:
        base: the bundle map, ``label`` or ``ink``.
        options: :class:`TabularBundle` options (split, fiber rule, fiber source, ...); the
            defaults here are ``scaling=minmax10_shared``, pixels bounded in [0, 16], exact fibers
            for ``label`` and the 15 nearest images for ``ink``, fibers from held-out images.
    """

    image_shape: tuple[int, int] = IMAGE_SHAPE

    def __init__(self, base: DigitsBase = "label", **options: Any) -> None:
        if base not in BASE_CHOICES:
            raise InputError(
                f"data.base must be one of {', '.join(BASE_CHOICES)} (the digit class, or the total ink), got {base!r}"
            )
        from sklearn.datasets import load_digits

        digits = load_digits()
        self._pixels = np.asarray(digits.data, dtype=np.float64)
        self._labels = np.asarray(digits.target, dtype=np.int64)
        images = torch.from_numpy(self._pixels)
        names = pixel_names()
        if base == "label":
            values, base_names = torch.from_numpy(np.asarray(digits.target, dtype=np.float64)).unsqueeze(1), ("digit",)
            defaults: dict[str, Any] = {"fibers": "exact"}
        else:
            values, base_names = images.sum(1, keepdim=True), ("ink",)
            defaults = {"fibers": "nearest", "fiber_neighbours": 15}
        defaults.update(scaling="minmax10_shared", fiber_source="test", bounds={name: [0.0, MAX_PIXEL] for name in names})
        self.base_kind = base
        self._classifier: Any = None
        # the fiber spreads along the pixels that vary, less the base's direction: the pixels that
        # are always 0 and (for ink) the direction Σx are normal to it
        self.fiber_span = int((images.std(0) > 0).sum()) - 1
        super().__init__(images, values, names, base_names, **{**defaults, **options})

    # ----------------------------------------------------------------- the exact map of ink
    def ink(self, total: Tensor, units: Units = "original") -> Tensor:
        """Σ pixels of images ``[..., 64]`` in pixel units: ``[...]``."""
        pixels = self._to_original(total, "total") if check_units(units) == "scaled" else total
        return pixels.sum(-1)

    def project(self, total: Tensor, units: Units = "original") -> Tensor:
        """π: the ink of each image (exact), or for ``label`` the class of the nearest image."""
        if self.base_kind == "label":
            return super().project(total, units)
        x = check_points(total, self.total_dim, "image", self.total_names).to(torch.get_default_dtype())
        ink = self.ink(x, units).unsqueeze(1)
        return ink if units == "original" else self._to_scaled(ink, "base")

    def distance_to_fiber(
        self, total: Tensor, base: Tensor, generator: torch.Generator | None = None, units: Units = "original"
    ) -> Tensor:
        """``ink``: the exact distance of images ``[B, n, 64]`` to the hyperplane Σx = y of each
        ``base [B, 1]``, |Σx − y| / 8 (pixel units, or scaled by the shared scale); ``label``:
        the distance to the nearest image of the class."""
        if self.base_kind == "label":
            return super().distance_to_fiber(total, base, generator, units)
        check_units(units)
        y = self._to_original(base, "base") if units == "scaled" else base
        gap = (self.ink(total, units) - y.to(total)).abs() / math.sqrt(self.total_dim)
        return gap / float(self.total_scale[0]) if units == "scaled" else gap

    # ----------------------------------------------------------------- image metrics
    def class_probabilities(self, images: Tensor) -> Tensor:
        """The digit classifier of the image metrics: class probabilities ``[N, 10]`` of images
        ``[N, 64]`` (pixel units) by a vote of their 10 nearest real training images (pixels / 16),
        leaving out a training image identical to the one classified (so training images are
        scored as held-out ones). A vote stays unsure of images unlike any digit (uniform noise:
        about 0.6 for the top class, held-out digits: about 0.96), where a calibrated SVM or a
        softmax classifier is often sure of noise."""
        if self._classifier is None:
            from sklearn.neighbors import NearestNeighbors

            rows = self.train_index.numpy()
            self._classifier = (NearestNeighbors(n_neighbors=VOTERS + 1).fit(self._pixels[rows] / MAX_PIXEL), self._labels[rows])
        index, labels = self._classifier
        flat = images.detach().reshape(-1, self.total_dim).clamp(0, MAX_PIXEL).double().cpu().numpy() / MAX_PIXEL
        distance, nearest = index.kneighbors(flat)
        itself = distance[:, :1] == 0
        voters = np.where(itself, nearest[:, 1:], nearest[:, :-1])
        votes = np.zeros((flat.shape[0], 10))
        np.add.at(votes, (np.arange(flat.shape[0])[:, None], labels[voters]), 1.0 / VOTERS)
        return torch.from_numpy(votes)

    def fiber_scores(
        self, total: Tensor, base: Tensor, units: Units = "original", reference: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Image metrics of fibers ``total [B, n, 64]`` drawn over ``base [B, 1]``: ``[B]`` each.

        ``confidence``: the classifier's mean top probability; ``accuracy`` (``label``): the
        share classified as the digit they were drawn for; ``ink_error`` (``ink``): the mean of
        |ink − y| / y; ``image_mmd`` (given real images ``reference [B, m, 64]`` of the same
        fibers, same units): the Gaussian-kernel MMD with the median distance between the real
        images of each fiber as bandwidth (the protocol's fixed-width MMD sees no overlap between
        64-pixel images: every kernel value is ≈ 0).
        """
        pixels = self._to_original(total, "total") if check_units(units) == "scaled" else total
        y = self._to_original(base, "base") if units == "scaled" else base
        proba = self.class_probabilities(pixels).reshape(*pixels.shape[:2], -1)
        scores = {"confidence": proba.max(-1).values.mean(-1)}
        if self.base_kind == "label":
            predicted = proba.argmax(-1).double()
            scores["accuracy"] = (predicted == y.double().cpu().round()).double().mean(-1)
        else:
            ink = self.ink(pixels.double()).cpu()
            target = y.double().cpu()
            scores["ink_error"] = ((ink - target).abs() / target.clamp_min(1.0)).mean(-1)
        if reference is not None:
            real = reference.double()
            bandwidth = pairwise_distances(real, real).flatten(1).median(dim=1).values.clamp_min(1e-9)
            scale = bandwidth.view(-1, 1, 1)
            scores["image_mmd"] = mmd(total.double() / scale, real / scale, blur=1.0).cpu()
        return scores
