"""datacenter_detector.download over the real HTTP path: a loopback STAC API + COG server (tests/stac_server.py) that the
real pystac-client and GDAL's /vsicurl/ read through; real fixtures; bad input; the CLI."""
import os, subprocess, sys
from pathlib import Path
import numpy as np, pytest, rasterio, rasterio.warp
from pyproj import Transformer
from rasterio.transform import from_origin
from datacenter_detector.core import Grid, BAND_NAMES, RGB, write_raster, repo_dir
from datacenter_detector import download as dl
from datacenter_detector.download import fetch, download, DownloadError
from stac_server import StacServer

REPO = repo_dir(Path(__file__).parent)
NAIP = REPO/'data'/'naip'
NAPA, BERKELEY = NAIP/'napa_naip_rgbn_1m_epsg26910.tif', NAIP/'berkeley_naip_rgb_epsg3857.tif'
ND = sorted(NAIP.glob('opengeos_m_4709963_se_14_1_*.tif'))
BIN = Path(sys.executable).parent
# GDAL configuration for HTTP reads in these tests, explicit (the library sets the same in download.GDAL_ENV)
GDAL_TEST_ENV = dict(GDAL_DISABLE_READDIR_ON_OPEN='EMPTY_DIR', CPL_VSIL_CURL_ALLOWED_EXTENSIONS='.tif',
                     GDAL_HTTP_MAX_RETRY='0', GDAL_HTTP_TIMEOUT='20')
FAST = dict(backoff=0.01, progress=False)   # tiny retry waits so the failure tests stay quick

@pytest.fixture(autouse=True)
def gdal_env():
    with rasterio.Env(**GDAL_TEST_ENV): yield

def make_cog(path, arr, left, top, res, epsg, nodata=0):
    return write_raster(path, arr, from_origin(left, top, res, res), f'EPSG:{epsg}', nodata=nodata)

def rand(shape, seed): return np.random.default_rng(seed).integers(1, 256, shape, dtype=np.uint8)

# Ohio, UTM 17N: a 0.6 m lattice origin near Columbus
X0, Y0, EPSG = 345_000.0, 4_436_400.0, 32617

def ohio_grid(x, y, w, h, res=0.6): return Grid(rasterio.crs.CRS.from_epsg(EPSG), from_origin(x, y, res, res), w, h)

def test_mosaic_two_items_straddling_the_window(tmp_path):
    "Two COGs side by side (overlapping by 40 px): a window across the seam is filled from both, newest item first."
    a, b = rand((4, 400, 300), 1), rand((4, 400, 300), 2)
    make_cog(tmp_path/'a.tif', a, X0, Y0, 0.6, EPSG)                  # columns 0..299
    make_cog(tmp_path/'b.tif', b, X0 + 260*0.6, Y0, 0.6, EPSG)        # columns 260..559
    with StacServer() as s:
        s.add_item(tmp_path/'a.tif', 'item_a', '2021-07-01T00:00:00Z')
        s.add_item(tmp_path/'b.tif', 'item_b', '2021-07-09T00:00:00Z')   # newer: wins in the overlap
        g = ohio_grid(X0 + 200*0.6, Y0 - 100*0.6, 120, 150)              # columns 200..319, rows 100..249
        arr, tags = fetch(g, 'stac', url=s.url, collection='naip', **FAST)
        served = dict(s.file_bytes)
    test = np.concatenate([a[:, 100:250, 200:260], b[:, 100:250, 0:60]], axis=2)  # b wins from column 260 on
    np.testing.assert_array_equal(arr, test)
    assert tags['items'] == 'item_b,item_a' and tags['datetimes'] == '2021-07-09,2021-07-01' and tags['year'] == '2021'
    assert tags['valid_fraction'] == '1.0000' and tags['source'] == 'stac'
    assert set(served) == {'item_a.tif', 'item_b.tif'}
    assert all(n < (tmp_path/k.split('_')[1]).stat().st_size for k, n in served.items())  # windowed: never the whole file

def test_nodata_hole_filled_by_the_next_item(tmp_path):
    "First valid pixel wins: a nodata hole in the newest item is filled from the older one; nothing else is."
    new, old = rand((4, 200, 200), 3), rand((4, 200, 200), 4)
    new[:, 50:80, 60:90] = 0
    make_cog(tmp_path/'new.tif', new, X0, Y0, 0.6, EPSG); make_cog(tmp_path/'old.tif', old, X0, Y0, 0.6, EPSG)
    with StacServer() as s:
        s.add_item(tmp_path/'new.tif', 'new', '2022-06-02T00:00:00Z'); s.add_item(tmp_path/'old.tif', 'old', '2022-05-01T00:00:00Z')
        arr, tags = fetch(ohio_grid(X0, Y0, 200, 200), 'stac', url=s.url, collection='naip', **FAST)
    want = new.copy(); want[:, 50:80, 60:90] = old[:, 50:80, 60:90]
    np.testing.assert_array_equal(arr, want)

def ramp(lon, lat):
    "A smooth test pattern in 1..255 defined on lon/lat, so that it can be checked in any CRS."
    return np.stack([100 + 2000*(lon + 84.02), 100 + 2000*(lat - 39.98), 120 + 1000*(lon + 84.02) + 1000*(lat - 39.98),
                     np.full_like(lon, 77.0)])

def test_reprojection_between_utm_zones(tmp_path):
    "A COG in UTM 16N read into a grid in UTM 17N (across the zone edge at 84 W): values land where lon/lat says."
    to16 = Transformer.from_crs(4326, 32616, always_xy=True)
    x, y = to16.transform(-84.02, 40.02)
    res, n = 1.0, 3000
    left, top = np.floor(x), np.ceil(y)
    xs, ys = left + res*(np.arange(n) + 0.5), top - res*(np.arange(n) + 0.5)
    lon, lat = Transformer.from_crs(32616, 4326, always_xy=True).transform(*np.meshgrid(xs, ys))
    make_cog(tmp_path/'z16.tif', np.clip(np.rint(ramp(lon, lat)), 1, 255).astype(np.uint8), left, top, res, 32616)
    g = Grid.around(-84.0, 40.0, size=300, res=0.6)          # centre on the zone edge: UTM 17N
    assert g.crs.to_epsg() == 32617
    with StacServer() as s:
        s.add_item(tmp_path/'z16.tif', 'z16', '2020-08-01T00:00:00Z')
        arr, tags = fetch(g, 'stac', url=s.url, collection='naip', **FAST)
    l, b, r, t = g.bounds
    gx, gy = np.meshgrid(l + 0.6*(np.arange(300) + 0.5), t - 0.6*(np.arange(300) + 0.5))
    glon, glat = Transformer.from_crs(32617, 4326, always_xy=True).transform(gx, gy)
    want = ramp(glon, glat)
    assert (arr > 0).all()
    assert np.abs(arr.astype(float) - want).max() <= 1.5, np.abs(arr.astype(float) - want).max()
    assert tags['native_res'] == '1'

def test_signing_is_isolated_and_signed_urls_are_read(tmp_path):
    "The server refuses unsigned URLs; a test signer adds the token, and only signed URLs reach the server."
    make_cog(tmp_path/'a.tif', rand((4, 200, 200), 5), X0, Y0, 0.6, EPSG)
    def signer(item):
        item = item.clone()
        for a in item.assets.values(): a.href += '?token=s3cret'
        return item
    g = ohio_grid(X0 + 30, Y0 - 30, 64, 64)
    with StacServer(token='s3cret') as s:
        s.add_item(tmp_path/'a.tif', 'a', '2021-07-01T00:00:00Z')
        arr, tags = dl.naip_source(g, url=s.url, signer=signer, **FAST)
        files = [r for r in s.requests if r['path'].startswith('/files/')]
        assert files and all(r['query'] == 'token=s3cret' for r in files)
        assert tags['source'] == 'naip' and tags['items'] == 'a' and (arr > 0).all()
        assert 's3cret' not in str(tags)                   # secrets stay out of the provenance
        n = len(s.requests)
        for sig in (None, dl.pc_signer):                   # unsigned, and PC's signer (which leaves non-Azure URLs alone)
            with pytest.raises(DownloadError, match='not signed'): dl.naip_source(g, url=s.url, signer=sig, **FAST)
        assert all(r['query'] == '' for r in s.requests[n:] if r['path'].startswith('/files/'))

def test_year_selection_and_missing_year(tmp_path):
    "Latest year by default; year= picks one; a year that is not there lists the ones that are."
    g = ohio_grid(X0, Y0, 50, 50)
    with StacServer() as s:
        for y in (2018, 2020, 2022):
            make_cog(tmp_path/f'{y}.tif', np.full((4, 100, 100), y - 2000, np.uint8), X0, Y0, 0.6, EPSG)
            s.add_item(tmp_path/f'{y}.tif', f'm_{y}', f'{y}-07-01T00:00:00Z', **{'naip:year': str(y)})
        arr, tags = fetch(g, 'naip', url=s.url, signer=None, **FAST)
        assert (arr == 22).all() and tags['year'] == '2022' and tags['items'] == 'm_2022'
        arr, tags = fetch(g, 'naip', url=s.url, signer=None, year=2018, **FAST)
        assert (arr == 18).all() and tags['year'] == '2018'
        with pytest.raises(DownloadError, match='years available: 2018, 2020, 2022'):
            download(tmp_path/'out'/'x.tif', grid=g, source='naip', year=2019, url=s.url, signer=None, **FAST)
    assert not (tmp_path/'out').exists() or not any((tmp_path/'out').iterdir())

def test_rgb_only_item_refused_before_reading(tmp_path):
    "An RGB-only year is refused from its metadata when 4 bands are needed (no pixel read); bands=RGB takes it."
    make_cog(tmp_path/'rgb.tif', rand((3, 100, 100), 6), X0, Y0, 0.6, EPSG)
    g = ohio_grid(X0, Y0, 40, 40)
    with StacServer() as s:
        s.add_item(tmp_path/'rgb.tif', 'rgb', '2012-07-01T00:00:00Z', bands=RGB)
        with pytest.raises(DownloadError, match=r"missing \['nir'\].*bands=RGB"):
            fetch(g, 'stac', url=s.url, collection='naip', **FAST)
        assert not [r for r in s.requests if r['path'].startswith('/files/')]
        arr, tags = fetch(g, 'stac', url=s.url, collection='naip', bands=RGB, **FAST)
    assert arr.shape == (3, 40, 40) and tags['bands'] == 'red,green,blue'

def test_network_failure_mid_read_retried_then_clear_error(tmp_path):
    "The server drops connections mid-body: the read is retried with backoff, then fails naming URL and cause; no file."
    make_cog(tmp_path/'a.tif', rand((4, 1024, 1024), 7), X0, Y0, 0.6, EPSG)
    out = tmp_path/'out'/'a.tif'
    with StacServer(drop_after=100_000) as s:
        url = s.add_item(tmp_path/'a.tif', 'a', '2021-07-01T00:00:00Z')
        with pytest.raises(DownloadError) as e:
            download(out, grid=ohio_grid(X0, Y0, 1024, 1024), source='stac', url=s.url, collection='naip', retries=2, **FAST)
        opens = [r for r in s.requests if r['path'] == '/files/a.tif' and r['range'] in (None, 'bytes=0-16383')]
    msg = str(e.value)
    assert url in msg and 'after 3 attempts' in msg, msg
    assert 'caused by' in msg.split('attempts:')[1]      # the cause (GDAL's own error, one level down) is in the message
    assert len(opens) >= 3                                # every attempt went back to the server (cache cleared)
    assert not out.exists() and (not out.parent.exists() or not list(out.parent.iterdir()))

def test_search_failure_is_clear(tmp_path):
    "A STAC API that is not there: retried, then an error naming the URL."
    with StacServer() as s: url = s.url          # closed on exit: nothing listens there any more
    with pytest.raises(DownloadError, match=f'Searching the STAC API {url}.*failed after 2 attempts'):
        fetch(ohio_grid(X0, Y0, 8, 8), 'stac', url=url, collection='naip', retries=1, **FAST)

def test_napa_uint16_fixture():
    "Napa: uint16 values 14..255 with nodata 256 come through unscaled; nodata becomes 0; nothing valid becomes 0."
    with rasterio.open(NAPA) as src:
        raw, g = src.read(), Grid(src.crs, src.transform, src.width, src.height)
    assert raw.dtype == np.uint16 and raw.max() == 256
    arr, tags = fetch(g, 'local', inputs=NAPA, progress=False)
    nod = (raw == 256).all(0)
    assert arr.dtype == np.uint8 and (arr[:, nod] == 0).all() and (arr[:, ~nod] > 0).all()
    np.testing.assert_array_equal(arr[:, ~nod], raw[:, ~nod].astype(np.uint8))

def test_napa_over_http(tmp_path):
    "The same real fixture served as a STAC item over loopback HTTP, warped to 0.6 m WGS 84 / UTM 10N."
    with rasterio.open(NAPA) as src: c = src.lnglat()
    g = Grid.around(*c, size=(360, 400))                 # larger than the file: nodata frame and outside -> 0
    with StacServer() as s:
        s.add_item(NAPA, 'napa', '2016-06-01T00:00:00Z')
        arr, tags = fetch(g, 'stac', url=s.url, collection='naip', **FAST)
    loc, _ = fetch(g, 'local', inputs=NAPA, progress=False)
    assert g.crs.to_epsg() == 32610 and 0.5 < (arr > 0).all(0).mean() < 0.8
    np.testing.assert_array_equal(arr, loc)              # HTTP and local reads agree pixel for pixel
    assert tags['native_res'] == '1'

def test_berkeley_rgb_3857_fixture(tmp_path):
    "Berkeley: RGB-only web mercator; 4 bands refused with a hint, RGB accepted and reprojected to UTM 10N."
    g = Grid.around(-122.2593, 37.8717, size=(600, 400), res=1.2)
    with pytest.raises(DownloadError, match='RGB only'): fetch(g, 'local', inputs=BERKELEY, progress=False)
    out = download(tmp_path/'b.tif', grid=g, source='local', bands=RGB, inputs=str(BERKELEY), progress=False)
    with rasterio.open(out) as o, rasterio.open(BERKELEY) as src:
        a = o.read()
        assert o.count == 3 and o.crs.to_epsg() == 32610 and o.descriptions == RGB and (a > 0).mean() > 0.99
        assert abs(a[1].mean() - src.read(2).mean()) < 10   # same scene, same brightness

def test_north_dakota_5m_fixtures():
    "ND: two years of one quarter quad at 5 m (nodata 0); on the native grid pixel for pixel, mosaic order honoured."
    with rasterio.open(ND[1]) as s20, rasterio.open(ND[0]) as s10:
        a20, a10, g = s20.read(), s10.read(), Grid(s20.crs, s20.transform, s20.width, s20.height)
    arr, tags = fetch(g, 'local', inputs=[ND[1], ND[0]], progress=False)
    v20 = (a20 > 0).any(0)
    np.testing.assert_array_equal(arr[:, v20], a20[:, v20])        # 2020 wherever it has data
    assert tags['items'].split(',')[0] == ND[1].name and tags['native_res'].startswith('5')
    gl = Grid.around(*rasterio.open(ND[0]).lnglat(), size=256, res=0.6)   # upsampled into UTM 14N at 0.6 m
    arr, _ = fetch(gl, 'local', inputs=str(NAIP/'opengeos_*_2010*.tif'), progress=False)
    assert gl.crs.to_epsg() == 32614 and (arr > 0).all()

def test_no_crs_local_file(tmp_path):
    with rasterio.open(tmp_path/'nocrs.tif', 'w', driver='GTiff', width=16, height=16, count=4, dtype='uint8') as d:
        d.write(rand((4, 16, 16), 8))
    with pytest.raises(DownloadError, match=r'nocrs\.tif has no CRS'):
        download(tmp_path/'o'/'x.tif', lat=40.0, lon=-82.0, size=16, source='local', inputs=tmp_path/'nocrs.tif')
    assert not (tmp_path/'o'/'x.tif').exists()

def test_bad_places_and_sizes(tmp_path):
    with pytest.raises(DownloadError, match='outside NAIP coverage.*continental United States'):
        download(tmp_path/'x.tif', lat=51.5, lon=-0.12, size=64)      # London: no network call is made
    with pytest.raises(ValueError, match=r'1e\+10 pixels, about 40 GB'):
        download(tmp_path/'x.tif', lat=40.06513, lon=-82.74859, size=100_000)
    assert not list(tmp_path.iterdir())

def test_synthetic_hook():
    "source='synthetic' imports datacenter_detector.synth lazily; without it, a clear error."
    try: import datacenter_detector.synth
    except ImportError:
        with pytest.raises(DownloadError, match=r'datacenter_detector\.synth \(nbs/01a_synth\.ipynb\)'):
            fetch(ohio_grid(X0, Y0, 8, 8), 'synthetic')
        return
    g = Grid.around(-77.4874, 39.0438, size=64)
    arr, tags = fetch(g, 'synthetic', seed=0)
    assert arr.shape == (4, 64, 64) and arr.dtype == np.uint8
    assert fetch(g, 'synthetic', bands=RGB, seed=0)[0].shape == (3, 64, 64)

def cli(*args, **kw):
    env = os.environ | {k: v for k, v in GDAL_TEST_ENV.items()}
    return subprocess.run([str(BIN/'dcd_download'), *map(str, args)], capture_output=True, text=True, env=env, timeout=120, **kw)

def test_cli_local_and_stac(tmp_path):
    with rasterio.open(ND[1]) as src: lon, lat = src.lnglat()
    r = cli('--source', 'local', '--inputs', ND[1], ND[0], '--lat', lat, '--lon', lon, '--size', 200, '--res', 2,
            '--output', tmp_path/'nd.tif')
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path/'nd.tif') as o:
        assert (o.width, o.height, o.count, o.res[0]) == (200, 200, 4, 2.0) and o.crs.to_epsg() == 32614
        assert o.tags()['items'] == ND[1].name and o.descriptions == BAND_NAMES
    make_cog(tmp_path/'a.tif', rand((4, 300, 300), 9), X0, Y0, 0.6, EPSG)
    lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(X0 + 90, Y0 - 90)
    with StacServer() as s:
        s.add_item(tmp_path/'a.tif', 'a', '2023-07-01T00:00:00Z')
        r = cli('--source', 'stac', '--stac-url', s.url, '--collection', 'naip', '--lat', lat, '--lon', lon, '--size', 100,
                '--output', tmp_path/'s.tif')
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path/'s.tif') as o:
        assert o.tags()['source'] == 'stac' and o.tags()['items'] == 'a' and o.tags()['datetimes'] == '2023-07-01'
        assert (o.read() > 0).all()

def test_cli_errors(tmp_path):
    r = cli('--lat', 40.06513, '--lon', -82.74859, '--size', 100_000, '--output', tmp_path/'x.tif')
    assert r.returncode != 0 and 'pixels, about' in r.stderr and 'Traceback' not in r.stderr
    r = cli('--lat', -33.9, '--lon', 151.2, '--size', 256, '--output', tmp_path/'x.tif')   # Sydney
    assert r.returncode != 0 and 'continental United States' in r.stderr
    assert not list(tmp_path.iterdir())

def test_cli_synthetic(tmp_path):
    pytest.importorskip('datacenter_detector.synth')
    r = cli('--source', 'synthetic', '--lat', 39.0438, '--lon', -77.4874, '--size', 96, '--bands', 'red,green,blue',
            '--seed', 2, '--output', tmp_path/'s.tif')
    assert r.returncode == 0, r.stderr
    with rasterio.open(tmp_path/'s.tif') as o:
        assert (o.count, o.width, o.crs.to_epsg(), o.descriptions) == (3, 96, 32618, RGB) and o.tags()['source'] == 'synthetic'
        assert o.read().std() > 3

def test_cli_bbox(tmp_path):
    "--bbox west,south,east,north: the output covers the box, in the UTM zone of its centre."
    with rasterio.open(ND[1]) as src: lon, lat = src.lnglat()
    bb = (lon - 0.004, lat - 0.003, lon + 0.004, lat + 0.003)
    r = cli('--source', 'local', '--inputs', ND[1], '--bbox', *bb, '--res', 5, '--output', tmp_path/'b.tif')
    assert r.returncode == 0, r.stderr
    r2 = cli('--source', 'local', '--inputs', ND[1], f"--bbox={','.join(map(str, bb))}", '--res', 5, '--output', tmp_path/'b2.tif')
    assert r2.returncode == 0, r2.stderr
    with rasterio.open(tmp_path/'b.tif') as o, rasterio.open(tmp_path/'b2.tif') as o2: assert (o.read() == o2.read()).all()
    with rasterio.open(tmp_path/'b.tif') as o:
        w, s, e, n = rasterio.warp.transform_bounds(o.crs, 4326, *o.bounds)
        assert o.crs.to_epsg() == 32614 and w <= bb[0] and s <= bb[1] and e >= bb[2] and n >= bb[3]
        assert e - w < bb[2] - bb[0] + 0.0002 and (o.read() > 0).all()   # covers it, no more than a pixel over
    r = cli('--bbox', '1', '2', '3', '--output', tmp_path/'x.tif')
    assert r.returncode != 0 and '4 numbers' in r.stderr
