"""Data stage, training-time augmentation: the paper's random crop, flip and perspective.

`augment_batch(x, generator)` takes a batch (B, C, H, W) and returns a new
batch where every image is shifted by a random crop of the image padded by
4 pixels on each side, then mirrored left-right with probability 1/2. One
`gather` over the flattened padded images does both for the whole batch (no per-sample Python loop), so it
runs on the GPU as fast as on the CPU, and the same generator state gives
the same batch on every run.

The PaRT reference (torchvision's RandomCrop(32, padding=4) before
ToTensor/Normalize) pads with black pixels. Our tensors are already
normalised, so the padding value is black *after* normalisation,
`(0 - mean) / std` per channel, when the caller passes `fill`.

`perspective_batch(x, generator, distortion_scale, p=0.5)` is torchvision's
RandomPerspective (the paper's third augmentation) for a whole batch: each
sample, with probability p, has its four corners moved inwards by random
whole pixels (up to distortion_scale * half the width/height, drawn as
torchvision's `get_params` draws them); one batched 8x8 solve gives each
sample's homography from output corners to input corners, and one
`grid_sample` (bilinear, pixel centres as torchvision's `_perspective_grid`)
warps them all. Uncovered regions get `fill`; unselected samples come back
bit-identical.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PADDING = 4
PERSPECTIVE_P = 0.5  # torchvision's RandomPerspective default, as in the paper


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    padding: int = PADDING,
    fill: Sequence[float] | torch.Tensor | None = None,
    part: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random crop (zero or `fill` padding of `padding` px) and horizontal flip of a (B, C, H, W) batch.

    `part` (start, total): x holds rows start.. of a batch of `total` rows; the draws are made for the
    whole batch and x gets its rows' own, so the parts of a batch come out as the whole batch would.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch needs a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    rows_of, total = _part(b, part)
    if b == 0:
        return x.clone()
    # Draw on the generator's device (a CPU generator can serve a CUDA batch), then move.
    gdev = generator.device
    dy = torch.randint(0, 2 * padding + 1, (total,), generator=generator, device=gdev)[rows_of].to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (total,), generator=generator, device=gdev)[rows_of].to(x.device)
    flip = (torch.rand(total, generator=generator, device=gdev)[rows_of] < 0.5).to(x.device)

    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H) rows of the padded image
    cols = torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(0), cols) + dx[:, None]  # (B, W); flipped samples read backwards
    hp, wp = h + 2 * padding, w + 2 * padding
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(b, 1, h * w).expand(b, c, h * w)
    padded = F.pad(x, (padding, padding, padding, padding))
    out = padded.reshape(b, c, hp * wp).gather(2, index).reshape(b, c, h, w)
    if fill is not None:
        outside_rows = (rows < padding) | (rows >= padding + h)
        outside_cols = (cols < padding) | (cols >= padding + w)
        outside = (outside_rows[:, :, None] | outside_cols[:, None, :])[:, None]  # (B, 1, H, W)
        values = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        out = torch.where(outside, values, out)
    return out


def perspective_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    distortion_scale: float,
    *,
    p: float = PERSPECTIVE_P,
    fill: Sequence[float] | torch.Tensor | None = None,
    part: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random perspective of a (B, C, H, W) batch, torchvision's RandomPerspective(distortion_scale, p) per sample.

    `part`: as for `augment_batch`.
    """
    if x.dim() != 4:
        raise ValueError(f"perspective_batch needs a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if not 0 <= distortion_scale < 1:
        raise ValueError(f"distortion_scale must be in [0, 1), got {distortion_scale}")
    b, c, h, w = x.shape
    rows_of, total = _part(b, part)
    dw, dh = int(distortion_scale * (w // 2)), int(distortion_scale * (h // 2))
    if b == 0 or p <= 0 or (dw == 0 and dh == 0):
        return x.clone()
    gdev = generator.device
    selected = (torch.rand(total, generator=generator, device=gdev)[rows_of] < p).to(x.device)
    # Inward moves of the corners (top-left, top-right, bottom-right, bottom-left), whole pixels as in torchvision.
    mx = torch.randint(0, dw + 1, (total, 4), generator=generator, device=gdev)[rows_of].to(x.device, torch.float64)
    my = torch.randint(0, dh + 1, (total, 4), generator=generator, device=gdev)[rows_of].to(x.device, torch.float64)
    start = corners(h, w, x.device).expand(b, 4, 2)
    sign = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], dtype=torch.float64, device=x.device)
    end = start + sign * torch.stack([mx, my], dim=2)
    grid = perspective_grid(homography(end, start), h, w).to(x.dtype)
    if fill is None:
        warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    else:  # sample x - fill with zero padding, add fill back: the bilinear warp of x padded with fill
        values = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
        warped = F.grid_sample(x - values, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + values
    return torch.where(selected[:, None, None, None], warped, x)


def _part(rows: int, part: tuple[int, int] | None) -> tuple[slice, int]:
    """The slice of the whole batch's draws that `rows` rows at `part` = (start, total) take, and total."""
    if part is None:
        return slice(0, rows), rows
    start, total = part
    if not (0 <= start and start + rows <= total):
        raise ValueError(f"rows {start}..{start + rows} do not lie in a batch of {total}")
    return slice(start, start + rows), total


def corners(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The image's corners (1, 4, 2) as (x, y), clockwise from top-left: torchvision's startpoints."""
    return torch.tensor([[[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]], dtype=torch.float64, device=device)


def homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The (B, 3, 3) homographies (h33 = 1) taking the four points src (B, 4, 2) to dst (B, 4, 2), in float64."""
    src, dst = src.to(torch.float64), dst.to(torch.float64)
    xs, ys = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(xs), torch.zeros_like(xs)
    rows_u = torch.stack([xs, ys, one, zero, zero, zero, -u * xs, -u * ys], dim=2)  # (B, 4, 8)
    rows_v = torch.stack([zero, zero, zero, xs, ys, one, -v * xs, -v * ys], dim=2)
    a = torch.stack([rows_u, rows_v], dim=2).reshape(-1, 8, 8)  # rows interleaved: u0, v0, u1, v1, ...
    rhs = torch.stack([u, v], dim=2).reshape(-1, 8, 1)
    coeffs = torch.linalg.solve(a, rhs)[..., 0]
    return torch.cat([coeffs, torch.ones_like(coeffs[:, :1])], dim=1).reshape(-1, 3, 3)


def perspective_grid(m: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The `grid_sample` grid (B, H, W, 2) reading output pixel (i, j) from input point m @ (j + 1/2, i + 1/2, 1).

    Pixel centres sit at +1/2 and the result is scaled by the image size, as
    in torchvision's `_perspective_grid`, so align_corners=False reads it.
    """
    ys, xs = torch.meshgrid(torch.arange(h, dtype=m.dtype, device=m.device) + 0.5,
                            torch.arange(w, dtype=m.dtype, device=m.device) + 0.5, indexing="ij")
    base = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, h * w, 3)
    mapped = base @ m.transpose(1, 2)  # (B, H*W, 3)
    xy = mapped[..., :2] / mapped[..., 2:]
    scale = torch.tensor([w / 2, h / 2], dtype=m.dtype, device=m.device)
    return (xy / scale - 1).reshape(-1, h, w, 2)
