"""Score maps for the tests."""

import numpy as np


def cam_like(rng, size=224, grid=14):
    """A smooth CAM-like map: a few Gaussian blobs plus noise at ``grid`` px, bicubic-upsampled, min-max."""
    import cv2

    yy, xx = np.mgrid[0:grid, 0:grid]
    low = 0.15 * rng.random((grid, grid))
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(1, grid - 1, 2)
        sigma = rng.uniform(0.8, grid / 4)
        low += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    up = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    return (up - up.min()) / (up.max() - up.min())
