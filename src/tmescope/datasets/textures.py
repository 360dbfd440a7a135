"""Periodic textures of the slide: collagen fibres in two orientations, and fine grain.

Made once per cohort by filtering white noise in the Fourier domain (so they tile seamlessly),
then read through a per-sample offset. Levels below 0 are box-reduced copies, so every pyramid
level shows the same fibres.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from scipy import ndimage

PERIOD_PX = 2048  # level-0 pixels; the textures repeat every period
FIBRE_LENGTH_UM = 22.0
FIBRE_WIDTH_UM = 2.2
BUNDLE_UM = 30.0  # spacing of fibre bundles, which leaves pale clefts between them
WAVE_UM = (40.0, 4.0)  # collagen waves: wavelength and amplitude


class Textures:
    """Channels ``(fibres at angle 0, fibres at angle 1, grain)``, each ``(P, P)`` float32."""

    def __init__(self, *, mpp: float, rng: np.random.Generator, period: int = PERIOD_PX) -> None:
        first = rng.uniform(0, math.pi)
        self.angles = (first, (first + rng.uniform(math.pi / 4, math.pi / 2)) % math.pi)
        noise = scipy.fft.rfft2(rng.standard_normal((period, period), dtype=np.float32))
        fy = scipy.fft.fftfreq(period).astype(np.float32)[:, None]  # cycles per pixel
        fx = scipy.fft.rfftfreq(period).astype(np.float32)[None, :]
        # One smooth field bends the fibres of both orientations into waves.
        waves = scipy.fft.rfft2(rng.standard_normal((period, period), dtype=np.float32))
        wave = _filtered(waves * np.exp(-((fx**2 + fy**2) * (WAVE_UM[0] / mpp) ** 2)))
        wave *= WAVE_UM[1] / mpp
        channels = [_fibres(noise, fx, fy, angle, mpp, wave) for angle in self.angles]
        grain = _filtered(noise * np.exp(-((fx**2 + fy**2) * (2 * math.pi * 0.7) ** 2) / 2))
        channels.append(grain)
        self._levels = {0: np.stack(channels).astype(np.float32)}

    @property
    def period(self) -> int:
        return self._levels[0].shape[-1]

    def at_level(self, level: int) -> np.ndarray:
        """``(3, P >> level, P >> level)``: the level-0 textures box-reduced."""
        if level not in self._levels:
            base = self._levels[0]
            f, side = 1 << level, self.period >> level
            self._levels[level] = base.reshape(3, side, f, side, f).mean(axis=(2, 4))
        return self._levels[level]


def _fibres(
    noise: np.ndarray, fx: np.ndarray, fy: np.ndarray, angle: float, mpp: float, wave: np.ndarray
) -> np.ndarray:
    """Wavy streaks along ``angle`` (radians, image x towards y), values in [-1, 1]."""
    along = fx * math.cos(angle) + fy * math.sin(angle)
    across = -fx * math.sin(angle) + fy * math.cos(angle)
    length, width, bundle = (v / mpp for v in (FIBRE_LENGTH_UM, FIBRE_WIDTH_UM, BUNDLE_UM))
    # Long along the fibre, thin across it; the band-pass keeps bundles apart.
    gain = np.exp(-((along * length) ** 2) - (across * width) ** 2)
    gain *= 1 - 0.7 * np.exp(-((across * bundle) ** 2))
    straight = _filtered(noise * gain)
    # Displace across the fibres by the wave field; wrapping keeps the texture periodic.
    period = straight.shape[0]
    index = np.arange(period, dtype=np.float32)
    coords = [index[:, None] + wave * math.cos(angle), index[None, :] - wave * math.sin(angle)]
    bent = ndimage.map_coordinates(straight, coords, order=1, mode="grid-wrap")
    return np.tanh(1.2 * bent).astype(np.float32)


def _filtered(spectrum: np.ndarray) -> np.ndarray:
    period = spectrum.shape[0]
    field = scipy.fft.irfft2(spectrum, s=(period, period))
    field -= field.mean()
    return field / (field.std() or 1.0)
