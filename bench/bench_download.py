"""Bytes read over HTTP vs bytes in the window, for windowed reads of a large COG served on loopback.

Makes an 8192x8192 4-band uint8 COG of random pixels (incompressible: the hardest case, compressed tiles are as big
as raw ones) in a temp dir, serves it with a STAC API on 127.0.0.1 (tests/stac_server.py), and reads a 2560x2560
window (the CLI's default size) at an offset that is not tile-aligned, side by side:
  - ours_native:   download.fetch(source='stac') on the file's own grid (warp with no resampling needed);
  - ours_shifted:  the same window shifted by half a pixel, so every pixel is resampled (bilinear);
  - direct_window: a plain rasterio windowed read of the same pixels through /vsicurl/ (baseline: GDAL alone);
  - whole_file:    what downloading the whole file would cost (baseline: no range requests).
The target: bytes read <= 2 x window bytes + COG header bytes (header = bytes served to open the file).
Writes bench/results/download.json and prints one summary line.
"""
import json, sys, tempfile, time
from pathlib import Path
import numpy as np, rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO/'tests'))
from stac_server import StacServer
from datacenter_detector.core import Grid, write_cog
from datacenter_detector.download import fetch, GDAL_ENV, gdal_path, _clear_vsicurl_cache

N, W, OFF, RES, EPSG, X0, Y0 = 8192, 2560, (3001, 2777), 0.6, 32617, 300_000.0, 4_440_000.0

def make_cog(path):
    tmp = path.with_suffix('.src.tif')
    prof = dict(driver='GTiff', width=N, height=N, count=4, dtype='uint8', crs=f'EPSG:{EPSG}', nodata=0,
                transform=from_origin(X0, Y0, RES, RES), tiled=True, blockxsize=512, blockysize=512)
    rng = np.random.default_rng(0)
    with rasterio.open(tmp, 'w', **prof) as dst:
        for r in range(0, N, 1024): dst.write(rng.integers(1, 256, (4, 1024, N), dtype=np.uint8), window=Window(0, r, N, 1024))
    with rasterio.open(tmp) as src: write_cog(src, path, compress='DEFLATE', level=1)
    tmp.unlink()
    return path

def served(fn, cog):
    "Run fn(server, href) against a fresh server (fresh URL, cleared GDAL cache); return (result, file bytes, seconds)."
    _clear_vsicurl_cache()
    with StacServer() as s:
        href = s.add_item(cog, 'big', '2022-07-01T00:00:00Z')
        t = time.perf_counter(); out = fn(s, href); dt = time.perf_counter() - t
        return out, s.bytes_served, dt

def main():
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter(); cog = make_cog(Path(d)/'big.tif'); t_make = time.perf_counter() - t
        size = cog.stat().st_size
        with rasterio.open(cog) as src: blocks, ovr = src.block_shapes[0], src.overviews(1)
        ox, oy = OFF
        g = Grid(rasterio.crs.CRS.from_epsg(EPSG), from_origin(X0 + ox*RES, Y0 - oy*RES, RES, RES), W, W)
        gs = Grid(g.crs, from_origin(X0 + (ox+0.5)*RES, Y0 - (oy+0.5)*RES, RES, RES), W, W)
        window_bytes = W*W*4
        with rasterio.Env(**GDAL_ENV):
            def open_only(s, href):
                with rasterio.open(gdal_path(href)) as src: return src.count
            _, header, _ = served(open_only, cog)
            def direct(s, href):
                with rasterio.open(gdal_path(href)) as src: return src.read(window=Window(ox, oy, W, W))
            a_direct, b_direct, t_direct = served(direct, cog)
        stac = lambda grid: (lambda s, href: fetch(grid, 'stac', url=s.url, collection='naip', progress=False)[0])
        a_ours, b_ours, t_ours = served(stac(g), cog)
        a_sh, b_sh, t_sh = served(stac(gs), cog)
    assert (a_ours == a_direct).all(), 'fetch on the native grid must return exactly the window'
    target = 2*window_bytes + header
    res = dict(cog=dict(size=[N, N], bands=4, dtype='uint8', blocks=list(blocks), overviews=ovr, file_bytes=size,
                        content='random (incompressible)', make_seconds=round(t_make, 1)),
               window=dict(size=[W, W], offset=list(OFF), bytes=window_bytes), header_bytes=header, target_bytes=target,
               bytes_read=dict(ours_native=b_ours, ours_shifted=b_sh, direct_window=b_direct, whole_file=size),
               ratio_to_window=dict(ours_native=round(b_ours/window_bytes, 3), ours_shifted=round(b_sh/window_bytes, 3),
                                    direct_window=round(b_direct/window_bytes, 3), whole_file=round(size/window_bytes, 3)),
               seconds=dict(ours_native=round(t_ours, 2), ours_shifted=round(t_sh, 2), direct_window=round(t_direct, 2)),
               within_target=dict(ours_native=b_ours <= target, ours_shifted=b_sh <= target))
    out = REPO/'bench'/'results'/'download.json'
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1))
    print(f"download: {W}x{W} window of an {N}x{N} loopback COG: read {b_ours/1e6:.1f} MB = {b_ours/window_bytes:.2f}x the window "
          f"({window_bytes/1e6:.1f} MB; shifted+resampled {b_sh/window_bytes:.2f}x, plain GDAL window {b_direct/window_bytes:.2f}x, "
          f"whole file {size/window_bytes:.1f}x; header {header/1e3:.0f} kB); target <= 2x + header: "
          f"{'met' if res['within_target']['ours_native'] and res['within_target']['ours_shifted'] else 'MISSED'}")

if __name__ == '__main__': main()
