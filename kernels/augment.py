"""Data augmentation of image batches in place: random crop with zero padding, then random
horizontal flip (torchvision's ``RandomCrop(H, padding=pad)`` followed by
``RandomHorizontalFlip()``, the CIFAR standard), on a batch of images stored as rows.

    out[n, c, h, w] = x[n, c, h + oy_n - pad, w' + ox_n - pad]   (0 outside the image)
    w' = W - 1 - w if flip_n else w

x, out (B, C*H*W) rows of (C, H, W) images (the loader's batch buffer: ``out`` is ``x``);
offsets (B, 2) integers in [0, 2 pad] (oy, ox): the crop's corner in the padded image;
flips (B,) uint8, 1 to mirror. Zero is the padding value of the data as it is in the batch
(after standardization: the training mean of each pixel).

The random numbers are drawn by the caller (from the run's generator, so a seed gives the
same augmentation on any number of threads); the kernel only moves pixels.
"""

from __future__ import annotations

from numba import prange

from ._jit import kernel
from ._typed import typed


@kernel
def flip_crop(x, C, H, W, pad, offsets, flips, scratch):
    """x[n] = flip_n(crop_n(zero-pad(x[n], pad))) in place (see the module docstring).
    x (B, C*H*W); offsets (B, 2) int64 in [0, 2 pad]; flips (B,) uint8; scratch (B, C*H*W)
    of x's dtype, overwritten with the batch's original pixels.

    Parallel over images: each image is copied to its own row of scratch and written back
    by one iteration, so any split is exact.
    """
    B = x.shape[0]
    if B == 0 or x.shape[1] == 0:
        return
    zero = typed(x[0, 0], 0.0)
    for n in prange(B):
        src, dst = scratch[n], x[n]
        for k in range(C * H * W):
            src[k] = dst[k]
        oy = offsets[n, 0] - pad
        ox = offsets[n, 1] - pad
        flip = flips[n] != 0
        for c in range(C):
            base = c * H * W
            for h in range(H):
                row = base + h * W
                sh = h + oy
                if sh < 0 or sh >= H:
                    for w in range(W):
                        dst[row + w] = zero
                    continue
                srow = base + sh * W
                for w in range(W):
                    sw = (W - 1 - w if flip else w) + ox
                    dst[row + w] = src[srow + sw] if 0 <= sw < W else zero
