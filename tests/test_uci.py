"""Wine and airfoil from the UCI files: the authors' preprocessing, download and offline paths."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from bundlenet.data.uci import AIRFOIL, WINE_RED, WINE_WHITE, airfoil, wine
from bundlenet.errors import InputError
from tests.conftest import SHARED_DATA

UCI = SHARED_DATA / "uci"
SPLITS = SHARED_DATA / "paper-splits"
needs_shared = pytest.mark.skipif(not (UCI.is_dir() and SPLITS.is_dir()), reason="../shared/data not present")


def paper(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The authors' train ∪ test rows as [total | base], and their base points."""
    parts = [torch.load(SPLITS / f"{name}_{p}.pt") for p in ("bundle", "bundle_test", "base", "base_test")]
    total, base = torch.cat(parts[:2]), torch.cat(parts[2:])
    return torch.cat([total, base], 1).double().numpy(), base.double().numpy()


def same_multiset(a: np.ndarray, b: np.ndarray, tol: float) -> None:
    """Rows of a and b are equal as multisets up to ``tol``: match sorted rows, then check each."""
    assert a.shape == b.shape
    order_a = np.lexsort(np.round(a / (tol * 10)).T[::-1])
    order_b = np.lexsort(np.round(b / (tol * 10)).T[::-1])
    np.testing.assert_allclose(a[order_a], b[order_b], atol=tol, rtol=0)


@needs_shared
def test_wine_matches_the_authors_tensors() -> None:
    bundle = wine(UCI, download=False, split_seed=0)
    ours = torch.cat([bundle.scaled_total, bundle.scaled_base], 1).double().numpy()
    theirs, their_base = paper("wine")
    np.testing.assert_allclose(ours.min(0), theirs.min(0), atol=1e-5)
    np.testing.assert_allclose(ours.max(0), theirs.max(0), atol=1e-5)
    assert (bundle.train_index.numel(), bundle.test_index.numel()) == (5197, 1300)
    ours_points = np.unique(np.round(bundle.scaled_base.double().numpy(), 4), axis=0)
    np.testing.assert_allclose(ours_points, np.unique(np.round(their_base, 4), axis=0), atol=1e-4)
    assert ours_points.shape == (13, 2) and bundle.fiber_base_points.shape == (13, 2)
    train, test = bundle.train_tensors(), (bundle.scaled_total[bundle.test_index], bundle.scaled_base[bundle.test_index])
    union = torch.cat([torch.cat(train, 1), torch.cat(test, 1)]).double().numpy()
    same_multiset(union, theirs, tol=1e-4)


@needs_shared
def test_airfoil_matches_the_authors_tensors() -> None:
    bundle = airfoil(UCI, download=False)
    ours = torch.cat([bundle.scaled_total, bundle.scaled_base], 1).double().numpy()
    theirs, _ = paper("airfoil")
    np.testing.assert_allclose(ours.min(0), theirs.min(0), atol=1e-5)
    np.testing.assert_allclose(ours.max(0), theirs.max(0), atol=1e-5)
    assert (bundle.train_index.numel(), bundle.test_index.numel()) == (1202, 301)
    assert bundle.base_names == ("sound_pressure",) and len(bundle.total_names) == 5
    same_multiset(ours, theirs, tol=1e-4)
    # original units come back in dB
    assert 100 < float(bundle.sample_total(10, torch.Generator().manual_seed(0)).base.min()) < 150


def test_offline_without_the_file_names_file_url_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        wine(tmp_path, download=False)
    message = str(err.value)
    assert "winequality-red.csv not found in" in message and str(tmp_path) in message
    assert WINE_RED.url("https://archive.ics.uci.edu/ml/machine-learning-databases") in message
    assert "\n" not in message and list(tmp_path.iterdir()) == []


def test_unreachable_server_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(
        InputError, match=rf"cannot download airfoil_self_noise.dat from http://127.0.0.1:{port}/.*put it in {tmp_path}"
    ):
        airfoil(tmp_path, base_url=f"http://127.0.0.1:{port}")
    assert list(tmp_path.iterdir()) == []


def fake_airfoil(rows: int = AIRFOIL.rows) -> str:
    gen = np.random.default_rng(0)
    data = np.column_stack(
        [
            gen.choice([800, 1000, 2000], rows),
            gen.uniform(0, 20, rows),
            gen.choice([0.05, 0.1, 0.3], rows),
            gen.choice([39.6, 71.3], rows),
            gen.uniform(1e-4, 0.05, rows),
            gen.uniform(105, 140, rows),
        ]
    )
    return "".join("\t".join(f"{v:g}" for v in row) + "\n" for row in data)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a folder laid out like the UCI repository."""
    site = tmp_path / "site"
    (site / "00291").mkdir(parents=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", site
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_missing_file_is_downloaded_checked_and_reused(tmp_path: Path, server: tuple[str, Path]) -> None:
    url, site = server
    (site / "00291" / "airfoil_self_noise.dat").write_text(fake_airfoil())
    root = tmp_path / "data"
    bundle = airfoil(root, base_url=url)
    assert bundle.num_rows == AIRFOIL.rows
    assert [p.name for p in root.iterdir()] == ["airfoil_self_noise.dat"]  # no temporary files left
    (site / "00291" / "airfoil_self_noise.dat").unlink()
    assert airfoil(root, base_url=url).num_rows == AIRFOIL.rows  # the local copy, no download


def test_bad_download_is_rejected_before_it_lands(tmp_path: Path, server: tuple[str, Path]) -> None:
    url, site = server
    (site / "00291" / "airfoil_self_noise.dat").write_text(fake_airfoil(rows=1000))
    root = tmp_path / "data"
    with pytest.raises(InputError, match=r"airfoil_self_noise.dat has 1000 rows × 6 columns after parsing, expected 1503 × 6"):
        airfoil(root, base_url=url)
    assert not root.exists() or list(root.iterdir()) == []
    with pytest.raises(InputError, match=r"cannot download winequality-red.csv from .*HTTP 404"):
        wine(root, base_url=url)
    assert not root.exists() or list(root.iterdir()) == []


def test_a_corrupt_local_file_says_to_delete_it(tmp_path: Path) -> None:
    (tmp_path / WINE_WHITE.name).write_text('"a";"quality"\n1;2\n')
    (tmp_path / WINE_RED.name).write_text('"a";"quality"\n1;2\n')
    with pytest.raises(InputError, match=r"winequality-red.csv has 1 rows × 2 columns after parsing, expected 1599 × 12; delete"):
        wine(tmp_path, download=False)
