"""The robot arm, the growing arc, the tilted shell and the level-set projection, against closed forms and an
independent sampler."""

from __future__ import annotations

import math

import pytest
import torch

from bundlenet.bundles import GrowingArc, RobotArm, TiltedShell
from bundlenet.geometry import project_to_level_set


def test_the_arm_fiber_reaches_its_point_with_the_prior_restricted_to_it() -> None:
    """Every fiber sample reaches the hand position exactly, and the fiber's distribution is the
    prior's conditioned on the hand position: it matches rejection sampling (prior samples whose
    hand lands within 0.03 of the target), an independent sampler."""
    arm = RobotArm()
    gen = torch.Generator().manual_seed(0)
    target = torch.tensor([[0.0, 1.75]], dtype=torch.float64)
    fiber = arm.sample_fiber(target.float(), 4000, gen)[0].double()
    torch.testing.assert_close(arm.project(fiber), target.expand(4000, 2), atol=1e-5, rtol=0)
    prior = arm.sample_total(3_000_000, gen)
    near = prior.total[(prior.base - target.float()).norm(dim=1) < 0.03].double()
    assert near.shape[0] > 1000
    torch.testing.assert_close(fiber.mean(0), near.mean(0), atol=0.04, rtol=0)
    torch.testing.assert_close(fiber.std(0), near.std(0), atol=0.04, rtol=0)


def test_the_arm_distance_is_the_distance_along_the_normal() -> None:
    """A fiber point moved by ε along a normal of the fiber (the row space of ∂π/∂x) is ε from
    it; one moved along the fiber (the null space) stays on it."""
    arm = RobotArm()
    gen = torch.Generator().manual_seed(1)
    base = arm.sample_total(3, gen).base
    x = arm.sample_fiber(base, 50, gen).double()
    jac = torch.func.vmap(torch.func.jacrev(lambda v: arm.project(v)))(x.reshape(-1, 4))  # [150, 2, 4]
    q, _ = torch.linalg.qr(jac.transpose(1, 2))  # [150, 4, 2]: orthonormal normals
    normal = q[:, :, 0].reshape(3, 50, 4)
    moved = x + 1e-3 * normal
    torch.testing.assert_close(
        arm.distance_to_fiber(moved, base.double()), torch.full((3, 50), 1e-3, dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_the_arc_distance_and_map_are_exact() -> None:
    arc = GrowingArc(min_half_angle=0.4, max_half_angle=2.8)
    y = torch.tensor([[0.0], [1.0]])
    points = torch.tensor([[[2.0, 0.0], [-3.0, 0.0]], [[0.0, 0.0], [2.0 * math.cos(2.8), 2.0 * math.sin(2.8)]]])
    expected = torch.tensor([[1.0, math.dist((-3, 0), (math.cos(0.4), math.sin(0.4)))], [2.0, 0.0]])
    torch.testing.assert_close(arc.distance_to_fiber(points, y), expected, atol=1e-6, rtol=0)
    fiber = arc.sample_fiber(torch.tensor([[0.25]]), 20_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(arc.project(fiber), torch.full((1, 20_000, 1), 0.25), atol=1e-6, rtol=0)
    angle = torch.atan2(fiber[..., 1], fiber[..., 0])
    half = 0.4 + 2.4 * 0.25
    assert float(angle.abs().max()) <= half + 1e-6
    # a triangular density on [−a, a]: variance a²/6
    assert float(angle.var()) == pytest.approx(half**2 / 6, rel=0.03)


def test_the_shell_is_a_3_sphere_uniform_untilted_and_tilted_toward_x1() -> None:
    shell = TiltedShell(tilt=3.0)
    gen = torch.Generator().manual_seed(0)
    y = torch.tensor([[0.0], [1.0]])
    fiber = shell.sample_fiber(y, 100_000, gen)
    torch.testing.assert_close(shell.project(fiber), y.unsqueeze(1).expand(2, 100_000, 1), atol=1e-5, rtol=0)
    direction = fiber / fiber.norm(dim=-1, keepdim=True)
    # y = 0: uniform on S³, so E[u] = 0 and E[u uᵀ] = I / 4
    torch.testing.assert_close(direction[0].mean(0), torch.zeros(4), atol=0.01, rtol=0)
    torch.testing.assert_close(direction[0].T @ direction[0] / 100_000, torch.eye(4) / 4, atol=0.01, rtol=0)
    # y = 1: a projected N(3 e1, I): tilted toward +x1, symmetric in the other coordinates
    assert 0.8 < float(direction[1, :, 0].mean()) < 0.9
    torch.testing.assert_close(direction[1, :, 1:].mean(0), torch.zeros(3), atol=0.01, rtol=0)
    # the exact distance: radial offsets from the sphere of radius 1 + y
    u = direction[:, :5]
    moved = u * torch.tensor([[[1.5]], [[2.0]]]) * torch.tensor([1.0, 1.2, 0.8, 1.0, 3.0]).view(1, 5, 1)
    expected = torch.tensor([[1.5, 1.5 * 1.2, 1.5 * 0.8, 1.5, 4.5], [2.0, 2.4, 1.6, 2.0, 6.0]]) - torch.tensor([[1.0], [2.0]])
    torch.testing.assert_close(shell.distance_to_fiber(moved, y), expected.abs(), atol=1e-5, rtol=0)


def test_projection_onto_a_sphere_is_the_radial_one() -> None:
    """{x : |x|² = 4} in R³: the nearest point of x is 2x/|x|, which Gauss–Newton finds."""
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    foot = project_to_level_set(x, torch.full((200, 1), 4.0, dtype=torch.float64), lambda v: v.pow(2).sum(-1, keepdim=True))
    torch.testing.assert_close(foot, 2 * x / x.norm(dim=1, keepdim=True), atol=1e-8, rtol=0)


def test_a_bundle_table_reads_back_through_data_csv(tmp_path) -> None:
    """``Bundle.table`` writes what ``data=csv`` reads: the total columns, then the base columns."""
    from bundlenet.data.csv_table import csv_bundle

    frame = RobotArm().table(300, seed=3)
    assert list(frame.columns) == ["rail", "shoulder", "elbow", "wrist", "hand_x", "hand_y"]
    frame.to_csv(tmp_path / "arm.csv", index=False)
    table = csv_bundle(tmp_path / "arm.csv", ["hand_x", "hand_y"])
    assert table.total_names == RobotArm.total_names and table.num_rows == 300
    torch.testing.assert_close(RobotArm().project(table.total.double()), table.base.double(), atol=1e-5, rtol=0)
