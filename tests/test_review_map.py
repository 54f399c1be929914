"The label reviewer's ipyleaflet map renders in a real headless Chromium, offline: overlay image and label polygons in the pixels."
import os, shutil, subprocess, tarfile, tempfile, warnings
from pathlib import Path
import numpy as np, pytest, shapely, geopandas as gpd
from PIL import Image
from datacenter_detector.core import repo_dir
from datacenter_detector.labels import LabelReviewer, save_labels, save_html, CLASS_COLORS

CHROMIUM = shutil.which('chromium') or '/usr/bin/chromium'
NAPA = repo_dir(Path(__file__).parent)/'data/naip/napa_naip_rgbn_1m_epsg26910.tif'
# Pinned npm packages whose files the page inlines: the widget manager for standalone pages, and RequireJS.
JS_PACKAGES = {'@jupyter-widgets/html-manager@1.0.15': 'package/dist/embed-amd.js', 'requirejs@2.3.8': 'package/require.js'}

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason='headless Chromium (apt chromium) is not installed')

@pytest.fixture(scope='session')
def widget_js():
    "Local copies of embed-amd.js and require.js: from $DCD_WIDGET_JS or a cache, else `npm pack` from the npm registry once."
    d = Path(os.environ.get('DCD_WIDGET_JS', Path.home()/'.cache/datacenter_detector/widget-js'))
    want = {spec: d/Path(member).name for spec, member in JS_PACKAGES.items()}
    if not all(p.exists() for p in want.values()):
        if not shutil.which('npm'): pytest.skip('npm is not installed: cannot get @jupyter-widgets/html-manager and requirejs')
        d.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as t:
            for spec, member in JS_PACKAGES.items():
                r = subprocess.run(['npm', 'pack', spec, '--pack-destination', t], capture_output=True, text=True, timeout=300)
                assert r.returncode == 0, f"npm pack {spec} failed: {r.stderr[-500:]}"
                tgz = Path(t)/r.stdout.strip().splitlines()[-1]
                with tarfile.open(tgz) as tf: data = tf.extractfile(member).read()
                tmp = want[spec].with_suffix('.part'); tmp.write_bytes(data); tmp.replace(want[spec])
    return want['requirejs@2.3.8'], want['@jupyter-widgets/html-manager@1.0.15']

def screenshot(html:Path, png:Path, size=(900, 700)):
    "Screenshot a page with headless Chromium (no network needed); return the RGB pixels."
    with tempfile.TemporaryDirectory() as ud:
        r = subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                            '--disable-background-networking', '--disable-component-update', '--disable-sync',
                            f'--user-data-dir={ud}', f'--window-size={size[0]},{size[1]}', '--virtual-time-budget=15000',
                            f'--screenshot={png}', html.as_uri()], capture_output=True, text=True, timeout=180)
    assert png.exists(), f"Chromium wrote no screenshot: {r.stderr[-1000:]}"
    return np.asarray(Image.open(png).convert('RGB')).astype(int)

def near(img, rgb, tol=30): return (np.abs(img - np.array(rgb)).sum(-1) <= tol)

@pytest.fixture(scope='module')
def reviewer(tmp_path_factory):
    "A reviewer over the real Napa NAIP image with one data center and one retail polygon."
    t = tmp_path_factory.mktemp('review')
    with rasterio_bounds() as (w, s, e, n):
        demo = gpd.GeoDataFrame(dict(fid=[1, 2], name=['dc', 'shop'], label=[True, False], **{'class': ['datacenter', 'retail']}),
                                geometry=[shapely.box(w+(e-w)*0.15, s+(n-s)*0.2, w+(e-w)*0.45, s+(n-s)*0.5),
                                          shapely.box(w+(e-w)*0.6, s+(n-s)*0.6, w+(e-w)*0.85, s+(n-s)*0.85)], crs=4326)
    rv = LabelReviewer(save_labels(demo, t/'labels.geojson'), image=NAPA, zoom=18, layout=dict(height='600px', width='850px'))
    return rv, t

from contextlib import contextmanager
@contextmanager
def rasterio_bounds():
    import rasterio
    from rasterio.warp import transform_bounds
    with rasterio.open(NAPA) as d: yield transform_bounds(d.crs, 4326, *d.bounds)

def test_map_renders_offline_in_chromium(reviewer, widget_js):
    rv, t = reviewer
    html = save_html(rv.widget(), t/'review.html', require_js=widget_js[0], embed_amd_js=widget_js[1])
    text = html.read_text()
    assert 'cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager' not in text.split('<script>')[0]  # no CDN script tag left
    img = screenshot(html, t/'review.png')
    H, W, _ = img.shape
    grey_bg = near(img, (221, 221, 221), 6) | near(img, (255, 255, 255), 6)
    assert (~grey_bg).mean() > 0.15, 'the page is (almost) blank'  # the image covers ~20% of the page
    # the overlay: many distinct colours of the real image (not UI flat colours)
    q = (img[:600, :850] // 16).reshape(-1, 3)
    assert len(np.unique(q, axis=0)) > 150, 'no image overlay visible'
    # the label polygons: the data center's red outline and the retail green outline (2 px strokes)
    red = near(img, tuple(int(CLASS_COLORS['datacenter'][i:i+2], 16) for i in (1, 3, 5)), 40).sum()
    green = near(img, tuple(int(CLASS_COLORS['retail'][i:i+2], 16) for i in (1, 3, 5)), 40).sum()
    assert red > 200 and green > 150, (red, green)
    # the red outline encloses the data center polygon's place: left part of the image, lower half
    ys, xs = np.nonzero(near(img, (214, 39, 40), 40))
    assert xs.mean() < W/2, xs.mean()

def test_cdn_page_is_blank_offline(reviewer):
    "Control: without the inlined scripts the same page cannot load its widget JS here, and the check above would fail."
    rv, t = reviewer
    html = save_html(rv.widget(), t/'cdn.html')
    img = screenshot(html, t/'cdn.png')
    assert near(img, (214, 39, 40), 40).sum() < 50
    assert len(np.unique((img // 16).reshape(-1, 3), axis=0)) < 150

def test_drawn_polygon_reaches_the_page(reviewer, widget_js):
    "A polygon added by a (simulated) draw event is in the page's widget state and drawn in its class colour."
    rv, t = reviewer
    with rasterio_bounds() as (w, s, e, n):
        poly = shapely.box(w+(e-w)*0.55, s+(n-s)*0.1, w+(e-w)*0.9, s+(n-s)*0.35)
    rv.picker.value = 'warehouse'; rv.name.value = 'drawn'
    rv.on_draw(rv.draw, 'created', dict(type='Feature', properties=dict(style={}), geometry=shapely.geometry.mapping(poly)))
    assert rv.gdf['name'].tolist()[-1] == 'drawn'
    html = save_html(rv.widget(), t/'drawn.html', require_js=widget_js[0], embed_amd_js=widget_js[1])
    img = screenshot(html, t/'drawn.png')
    blue = near(img, (31, 119, 180), 40)  # warehouse colour
    assert blue.sum() > 150, blue.sum()
    ys, xs = np.nonzero(blue)
    assert xs.mean() > img.shape[1]*0.4
