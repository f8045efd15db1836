"""Scan-like degradation: skew, blur, JPEG artefacts and speckle."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

# Strength of each effect at noise=1; kept mild so text stays readable.
MAX_ROTATION_DEG = 1.5
MAX_BLUR_RADIUS = 0.9
MIN_JPEG_QUALITY = 30
MAX_SPECKLE_FRACTION = 0.004


def _rotate(image: Image.Image, noise: float, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(-1.0, 1.0)) * MAX_ROTATION_DEG * noise
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def _speckle(image: Image.Image, noise: float, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image).copy()
    height, width = pixels.shape[:2]
    count = int(height * width * MAX_SPECKLE_FRACTION * noise)
    ys, xs = rng.integers(0, height, count), rng.integers(0, width, count)
    dark = rng.random(count) < 0.5
    pixels[ys[dark], xs[dark]] = rng.integers(40, 140)
    pixels[ys[~dark], xs[~dark]] = 255
    return Image.fromarray(pixels)


def _jpeg(image: Image.Image, noise: float) -> Image.Image:
    quality = round(95 - (95 - MIN_JPEG_QUALITY) * noise)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def apply_noise(image: Image.Image, noise: float, rng: np.random.Generator) -> Image.Image:
    """Degrade a clean page like a cheap scan; each effect fires at random.

    Args:
        image: Clean RGB page.
        noise: Strength in ``[0, 1]``; 0 returns the image unchanged.
        rng: The document's own random generator.

    Returns:
        The degraded RGB image (same size).

    Raises:
        ValueError: If ``noise`` is outside ``[0, 1]``.
    """
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    if noise == 0.0:
        return image
    # Draw every decision first so the RNG stream does not depend on the image.
    rotate, blur, speckle, jpeg = rng.random(4) < 0.35 + 0.5 * noise
    radius = float(rng.uniform(0.3, 1.0)) * MAX_BLUR_RADIUS * noise
    if rotate:
        image = _rotate(image, noise, rng)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(radius))
    if speckle:
        image = _speckle(image, noise, rng)
    if jpeg:
        image = _jpeg(image, noise)
    return image
