"""Data stage: the paper's random perspective (`perspective_batch`) and its `perspective=` option."""

from __future__ import annotations

import pytest
import torch

import partc
from partc.data import augment_batch, load_task_data
from partc.data.augment import corners, homography, perspective_batch, perspective_grid
from partc.train import train


def _draws(seed: int, b: int, dw: int, dh: int, p: float = 0.5):
    """The generator draws perspective_batch makes: selection, then corner moves in x and in y."""
    g = torch.Generator().manual_seed(seed)
    selected = torch.rand(b, generator=g) < p
    return selected, torch.randint(0, dw + 1, (b, 4), generator=g), torch.randint(0, dh + 1, (b, 4), generator=g)


def test_no_distortion_or_no_probability_is_the_identity():
    x = torch.rand(16, 3, 12, 10)
    for scale, p in [(0.0, 1.0), (0.5, 0.0), (0.1, 1.0)]:  # 0.1 * 5 and 0.1 * 6 round down to no move
        out = perspective_batch(x, torch.Generator().manual_seed(0), scale, p=p, fill=[1.0, 2.0, 3.0])
        assert torch.equal(out, x) and out is not x


def test_zero_displacement_gives_the_identity_homography():
    start = corners(32, 32).expand(5, 4, 2)
    assert torch.allclose(homography(start, start), torch.eye(3, dtype=torch.float64).expand(5, 3, 3), atol=1e-12)


def test_homography_maps_each_corner_where_asked():
    g = torch.Generator().manual_seed(4)
    src = corners(32, 32) + torch.randint(-8, 9, (6, 4, 2), generator=g).double()
    dst = corners(32, 32) + torch.randint(-8, 9, (6, 4, 2), generator=g).double()
    m = homography(src, dst)
    mapped = torch.cat([src, torch.ones(6, 4, 1, dtype=torch.float64)], dim=2) @ m.transpose(1, 2)
    assert torch.allclose(mapped[..., :2] / mapped[..., 2:], dst, atol=1e-9)


def test_grid_at_the_corners_follows_the_analytic_map():
    """Corners moved k px inwards on every side: the map output -> input is the zoom u = (x - k) (w-1) / (w-1-2k)."""
    h = w = 32
    k = 5
    end = corners(h, w) + torch.tensor([[[k, k], [-k, k], [-k, -k], [k, -k]]], dtype=torch.float64)
    m = homography(end, corners(h, w))
    s = (w - 1) / (w - 1 - 2 * k)
    assert torch.allclose(m[0], torch.tensor([[s, 0, -k * s], [0, s, -k * s], [0, 0, 1]], dtype=torch.float64))
    grid = perspective_grid(m, h, w)[0]
    for i, j in [(0, 0), (0, w - 1), (h - 1, w - 1), (h - 1, 0), (13, 20)]:
        want = torch.tensor([((j + 0.5 - k) * s) / (w / 2) - 1, ((i + 0.5 - k) * s) / (h / 2) - 1], dtype=torch.float64)
        assert torch.allclose(grid[i, j], want, atol=1e-12)


def test_batch_is_deterministic_keeps_shape_and_leaves_unselected_samples_alone():
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = perspective_batch(x, torch.Generator().manual_seed(1), 0.5)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, perspective_batch(x, torch.Generator().manual_seed(1), 0.5))
    assert not torch.equal(out, perspective_batch(x, torch.Generator().manual_seed(2), 0.5))
    selected, _, _ = _draws(1, 64, 8, 8)
    assert 10 < selected.sum() < 54
    assert torch.equal(out[~selected], x[~selected])  # bit-identical
    changed = (out != x).flatten(1).any(1)
    assert changed[selected].float().mean() > 0.9
    half = perspective_batch(x.double(), torch.Generator().manual_seed(1), 0.5)
    assert half.dtype == torch.float64 and torch.allclose(half.float(), out, atol=1e-5)


def test_uncovered_regions_get_the_fill_value():
    b, fill = 64, [-1.0, 3.0]
    x = torch.full((b, 2, 16, 16), 5.0)
    out = perspective_batch(x, torch.Generator().manual_seed(7), 0.5, p=1.0, fill=fill)
    _, mx, my = _draws(7, b, 4, 4, p=1.0)
    far = (mx[:, 0] >= 2) & (my[:, 0] >= 2)  # top-left corner moved 2+ px both ways: pixel (0, 0) reads only padding
    assert far.any()
    assert torch.equal(out[far, :, 0, 0], torch.tensor(fill).expand(int(far.sum()), 2))
    assert torch.allclose(out[:, :, 8, 8], torch.tensor(5.0))  # the middle stays covered
    lo, hi = torch.tensor(fill).reshape(1, 2, 1, 1), torch.tensor(5.0)
    assert ((out >= torch.minimum(lo, hi) - 1e-5) & (out <= torch.maximum(lo, hi) + 1e-5)).all()


SPEC = """network p {{
  input img: float[1, 8, 8]
  seed 2
  level l1 = 2 x conv(4, k=3, pad=1) then avgpool
  task a {{ data digits(classes=[0, 1], augment=true{extra}, limit=48) path random(1) }}
  train {{ epochs 1; batch 16 }}
}}
"""


def test_spec_option_reaches_task_data_and_training(tmp_path):
    net = partc.loads(SPEC.format(extra=", perspective=0.3"), "p.part")
    data = load_task_data(net, "a")
    assert data.augment and data.perspective == 0.3
    assert load_task_data(partc.loads(SPEC.format(extra=""), "p.part"), "a").perspective == 0.0
    x = data.train[0][:32]
    out = data.augment_batch(x, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the same draws in the paper's order: crop and flip, then perspective
    want = perspective_batch(augment_batch(x, g, fill=data.pad_value), g, 0.3, fill=data.pad_value)
    assert torch.equal(out, want)
    assert not torch.equal(out, augment_batch(x, torch.Generator().manual_seed(3), fill=data.pad_value))
    results = train(net, tmp_path / "run", device="cpu", quiet=True)
    assert results


@pytest.mark.parametrize("extra, message", [
    (", perspective=1.5", "perspective= must be a distortion scale in [0, 1)"),
    (", perspective=-0.1", "perspective= must be a distortion scale in [0, 1)"),
    (", perspective=true", "perspective= must be a distortion scale in [0, 1)"),
])
def test_bad_perspective_values_are_spec_errors(extra, message):
    with pytest.raises(partc.errors.SpecError, match="perspective=") as e:
        partc.loads(SPEC.format(extra=extra), "p.part")
    assert message in str(e.value) and e.value.loc is not None


def test_perspective_without_augment_is_a_spec_error():
    text = SPEC.format(extra="").replace("augment=true", "augment=false, perspective=0.5")
    with pytest.raises(partc.errors.SpecError, match="applies only with augment=true") as e:
        partc.loads(text, "p.part")
    assert e.value.loc.line == 5
