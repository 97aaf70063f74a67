"""Data stage, training-time augmentation: the paper's random crop and flip.

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
Not done: the paper's random perspective.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PADDING = 4


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    padding: int = PADDING,
    fill: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """Random crop (zero or `fill` padding of `padding` px) and horizontal flip of a (B, C, H, W) batch."""
    if x.dim() != 4:
        raise ValueError(f"augment_batch needs a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if b == 0:
        return x.clone()
    # Draw on the generator's device (a CPU generator can serve a CUDA batch), then move.
    gdev = generator.device
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=gdev).to(x.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=gdev).to(x.device)
    flip = (torch.rand(b, generator=generator, device=gdev) < 0.5).to(x.device)

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
