"""The decoded-tile cache reads what tifffile's zarr interface reads, decoding each tile once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

from factories import write_fullres_tiff
from tmescope.io import open_slide
from tmescope.io.tiles import TileCache


@pytest.fixture(params=[None, "jpeg", "zlib"])
def tiled_tiff(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)  # edge tiles are partial
    return write_fullres_tiff(tmp_path / "s.tif", pixels, mpp=0.5, compression=request.param)


def test_regions_match_the_zarr_interface(tiled_tiff: Path) -> None:
    with tifffile.TiffFile(tiled_tiff) as tif:
        reference = zarr.open_array(tif.series[0].aszarr(level=0), mode="r")[:]
        cache = TileCache(tiled_tiff, tif.series[0].levels[0].keyframe)
        try:
            assert np.array_equal(cache.read(0, 0, 420, 300), reference)
            assert np.array_equal(cache.read(100, 37, 301, 299), reference[37:299, 100:301])
        finally:
            cache.close()


def test_each_tile_is_decoded_once_in_raster_order(tiled_tiff: Path) -> None:
    with tifffile.TiffFile(tiled_tiff) as tif:
        cache = TileCache(tiled_tiff, tif.series[0].levels[0].keyframe)
        try:
            for y in range(0, 300 - 64, 32):
                for x in range(0, 420 - 64, 32):
                    cache.read(x, y, x + 64, y + 64)
            assert cache.decoded == cache.tiles_across * cache.tiles_down == 4 * 3
        finally:
            cache.close()


def test_the_cache_stays_bounded(tiled_tiff: Path) -> None:
    with tifffile.TiffFile(tiled_tiff) as tif:
        cache = TileCache(tiled_tiff, tif.series[0].levels[0].keyframe, cache_bytes=1)
        try:
            for _ in range(2):
                cache.read(0, 0, 420, 300)
            assert len(cache._cache) == 8  # the floor on capacity
            assert cache.decoded == 2 * 12  # evicted tiles are decoded again
        finally:
            cache.close()


def test_tiff_slides_use_the_cache_for_tiled_levels(tiled_tiff: Path) -> None:
    with open_slide(tiled_tiff) as slide:
        assert all(t is not None for t in slide._tiles)  # type: ignore[attr-defined]
        patch = slide.read_region(10.4, 20.6, 64, 64, size=(64, 64))
        assert np.array_equal(patch, slide.read_level(0, 10, 21, 64, 64))
