"Tests of the scene synthesizer (datacenter_detector.synth): determinism, georeferencing, calibrated band statistics, no band-statistics shortcut, the dcd_download CLI."
import json, os, shutil, subprocess, sys, importlib.util
from pathlib import Path
import numpy as np, geopandas as gpd, pytest, rasterio, rasterio.features
from shapely.geometry import box
from datacenter_detector.core import Grid, LABELS, BAND_NAMES, write_raster, provenance
from datacenter_detector.synth import (render_scene, synthetic_source, read_labels, load_calibration, surface_means,
                                       structure_features, Difficulty, CLASSES)

LAB = read_labels()

def centre(fid):
    "Lon, lat of the centroid of real label `fid`."
    c = LAB[LAB.fid == fid].geometry.iloc[0].centroid
    return c.x, c.y

def site_grid(fid, size=512): return Grid.around(*centre(fid), size)

def test_determinism():
    g = site_grid(1, 384)
    a, b = render_scene(g, seed=7), render_scene(g, seed=7)
    assert a.img.tobytes() == b.img.tobytes()
    assert a.labels.to_json() == b.labels.to_json() and a.tags == b.tags
    assert render_scene(g, seed=8).img.tobytes() != a.img.tobytes()
    arr, tags = synthetic_source(g, seed=7)
    assert arr.tobytes() == a.img.tobytes() and tags['seed'] == '7'

def test_same_site_same_look_in_shifted_grids():
    "A real site is seeded by its fid: its roof pixels match in two grids offset by a whole number of pixels."
    g = site_grid(58, 512)
    g2 = Grid(g.crs, g.transform @ g.transform.translation(32, 16), g.width, g.height)
    a, b = render_scene(g, seed=1, extra_sites=0), render_scene(g2, seed=1, extra_sites=0)
    ka = a.labels.index[a.labels.fid == 58][0] + 1; kb = b.labels.index[b.labels.fid == 58][0] + 1
    ma, mb = a.footprints == ka, b.footprints == kb
    assert ma.sum() > 1000
    assert (ma[16:, 32:] == mb[:-16, :-32]).mean() > 0.999

@pytest.mark.parametrize('fid', [1, 58, 47, 74])
def test_georeferencing(tmp_path, fid):
    "Every visible label polygon, rasterised independently from the label file on the written COG's grid, is where the roof was drawn."
    g = site_grid(fid, 512)
    sc = render_scene(g, seed=2, extra_sites=0, nodata_edge=0)
    out = write_raster(tmp_path/'scene.tif', sc.img, g.transform, g.crs, nodata=0, tags=provenance(**sc.tags), band_names=BAND_NAMES)
    # the same scene without any labels: the background is identical, so changed pixels are what the sites drew
    bare = render_scene(g, labels=LAB.iloc[:0], seed=2, extra_sites=0, nodata_edge=0)
    changed = (sc.img != bare.img).any(0)
    raw = gpd.read_file(LABELS)  # independent path: the raw file, its own CRS handling
    with rasterio.open(out) as ds:
        img = ds.read(); T, crs = ds.transform, ds.crs
        raw = raw.to_crs(crs)
        vis = raw[raw.intersects(box(*ds.bounds))]
    assert np.array_equal(img, sc.img)
    assert sorted(vis.fid) == sorted(sc.labels.fid), (sorted(vis.fid), sorted(sc.labels.fid))
    r, n = img[0].astype(float), img[3].astype(float); ndvi = (n - r)/(n + r + 1e-6)
    for row in vis.itertuples():
        m = rasterio.features.rasterize([(row.geometry, 1)], out_shape=img.shape[1:], transform=T, dtype='uint8').astype(bool)
        if m.sum() < 50: continue
        k = sc.labels.index[sc.labels.fid == row.fid][0] + 1
        drawn = sc.footprints == k
        iou = (m & drawn).sum()/(m | drawn).sum()
        assert iou > 0.97, (row.fid, iou)
        assert changed[m].mean() > 0.95, (row.fid, changed[m].mean())     # the rendering drew something there...
        assert (ndvi[m] < 0.2).mean() > 0.9, (row.fid, (ndvi[m] < 0.2).mean())  # ...and it is roof, not vegetation
    assert (sc.mask() == 1).sum() == sum((sc.footprints == i+1).sum() for i in np.flatnonzero(sc.labels['class'] == 'datacenter'))

def test_band_statistics_within_calibrated_ranges():
    cal = load_calibration(); rg = cal['ranges']
    scenes = [render_scene(site_grid(f, 512), seed=s) for s, f in enumerate((1, 58, 47, 74, 120))]
    # context-only scenes 1.2 km across: the real files' spreads are those of km-sized areas (a 300 m window of one field is flatter)
    scenes += [render_scene(Grid.around(-97.0 + i, 39.0, 2048), labels=LAB.iloc[:0], seed=40+i) for i in range(3)]
    for sc in scenes:
        x = sc.img[:, sc.valid].astype(np.float32)
        mu, sd = x.mean(1), x.std(1)
        assert (mu >= rg['mean_lo']).all() and (mu <= rg['mean_hi']).all(), mu
        assert (sd >= rg['std_lo']).all() and (sd <= rg['std_hi']).all(), sd
    # vegetation, found with the calibration's own NDVI rule, has NAIP-like colour: NIR far above red, levels near the real anchor
    px = np.concatenate([sc.img[:, sc.valid] for sc in scenes], 1).astype(np.float32)
    veg = np.array(surface_means(px)['vegetation']['mean']); anchor = np.array(cal['anchors']['vegetation'])
    assert veg[3] > 1.5*veg[0] and (np.abs(veg - anchor) < 35).all(), (veg, anchor)

def test_band_statistics_do_not_separate_datacenters_from_warehouses():
    "Logistic regression on per-chip band means and stds: CV accuracy below 0.75; on colour-blind structure features: clearly better."
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from sklearn.pipeline import make_pipeline
    from sklearn.model_selection import cross_val_score, StratifiedKFold
    X, S, y = [], [], []
    for cls, seeds in (('datacenter', (0,)), ('warehouse', (0, 1))):  # balanced: 79 vs 82 chips
        for s in seeds:
            for r in LAB[LAB['class'] == cls].itertuples():
                c = r.geometry.centroid
                img = render_scene(Grid.around(c.x, c.y, 256), seed=s, nodata_edge=0).img
                a = img.reshape(4, -1).astype(np.float32)
                X.append(np.r_[a.mean(1), a.std(1)]); S.append(structure_features(img)); y.append(cls == 'datacenter')
    X, S, y = np.array(X), np.array(S), np.array(y)
    assert 0.45 < y.mean() < 0.55
    cv = lambda F: cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), F, y,
                                   cv=StratifiedKFold(5, shuffle=True, random_state=0)).mean()
    acc, acc_s = cv(X), cv(S)
    assert acc < 0.75, acc
    assert acc_s > acc + 0.08, (acc, acc_s)   # the signal is in the structure, not the colour

def test_no_datacenter_scene_and_procedural_sites():
    g = site_grid(1, 1024)
    sc = render_scene(g, seed=3, datacenters=False, extra_sites=4)
    assert len(sc.labels) and 'datacenter' not in set(sc.labels['class'])
    assert (sc.mask() == 1).sum() == 0
    sc2 = render_scene(Grid.around(-98.0, 38.5, 1024), labels=LAB.iloc[:0], seed=4, extra_sites=5)
    assert (sc2.labels.source == 'procedural').sum() >= 3
    l, b, r, t = sc2.grid.bounds
    assert (sc2.labels.bounds.minx >= l - 1e-6).all() and (sc2.labels.bounds.maxy <= t + 1e-6).all()
    feats = json.loads(sc2.tags['synth_labels'])['features']
    assert len(feats) == len(sc2.labels) and {f['properties']['source'] for f in feats} == {'procedural'}

def test_nodata_edge_clips_labels():
    g = site_grid(1, 768)
    sc = render_scene(g, seed=0, nodata_edge=100.0)  # always an edge
    nod = ~sc.valid
    assert 0 < nod.mean() < 0.5 and (sc.img[:, nod] == 0).all() and (sc.img[:, ~nod] > 0).all()
    assert (sc.footprints[nod] == 0).all() and (sc.mask()[nod] == 255).all()

def test_difficulty_changes_scenes():
    g = site_grid(58, 256)
    assert render_scene(g, difficulty='easy').img.tobytes() != render_scene(g, difficulty='hard').img.tobytes()
    with pytest.raises(ValueError, match='Unknown difficulty'): render_scene(g, difficulty='brutal')
    with pytest.raises(ValueError, match='metric CRS'): render_scene(Grid(g.crs.from_epsg(4326), g.transform, 8, 8))

def _cli(name):
    exe = Path(sys.executable).parent/name
    return str(exe) if exe.exists() else shutil.which(name)

def test_dcd_download_synthetic(tmp_path):
    if importlib.util.find_spec('datacenter_detector.download') is None:
        pytest.skip('datacenter_detector.download is not present: the dcd_download CLI cannot be tested')
    lon, lat = centre(1)
    out = tmp_path/'synth.tif'
    p = subprocess.run([_cli('dcd_download'), '--source', 'synthetic', '--lat', str(lat), '--lon', str(lon), '--size', '384',
                        '--seed', '5', '--output', str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with rasterio.open(out) as ds:
        assert (ds.count, ds.dtypes[0], ds.nodata, ds.descriptions) == (4, 'uint8', 0, BAND_NAMES)
        assert ds.crs.to_epsg() == 32618 and abs(ds.res[0] - 0.6) < 1e-9
        arr, tags = ds.read(), ds.tags()
        g = Grid(ds.crs, ds.transform, ds.width, ds.height)
    assert tags['source'] == 'synthetic' and tags['seed'] == '5'
    assert np.array_equal(arr, render_scene(g, seed=5).img)  # the CLI wrote exactly the rendered scene
    names = {f['properties']['name'] for f in json.loads(tags['synth_labels'])['features']}
    assert 'vantage_0' in names

def test_other_label_file(tmp_path):
    "A user's label file (another CRS, another class spelling) is drawn at its place; the packaged labels are not."
    from shapely.geometry import box as sbox
    g = Grid.around(-98.5, 38.5, 512)      # nowhere near a packaged label
    l, b, r, t = g.bounds
    poly = sbox(l + 60, b + 60, l + 200, b + 150)
    f = tmp_path/'mine.geojson'
    gpd.GeoDataFrame(dict(fid=[7], name=['mine'], **{'class': ['Datacemter']}), geometry=[poly], crs=g.crs).to_file(f, driver='GeoJSON')
    sc = render_scene(g, labels=str(f), seed=0, nodata_edge=0)
    assert list(sc.labels.fid) == [7] and list(sc.labels['class']) == ['datacenter'] and sc.labels.label.all()
    m = rasterio.features.rasterize([(poly, 1)], out_shape=g.shape, transform=g.transform, dtype='uint8').astype(bool)
    assert ((sc.mask() == 1) == m).mean() > 0.999
    assert len(render_scene(g, seed=0).labels) == 0
    with pytest.raises(FileNotFoundError, match='does not exist'): render_scene(g, labels=str(tmp_path/'nope.geojson'))
    out = tmp_path/'mine.tif'   # the same through the CLI's --labels
    lon, lat = (-98.5, 38.5)
    p = subprocess.run([_cli('dcd_download'), '--source', 'synthetic', '--lat', str(lat), '--lon', str(lon), '--size', '512',
                        '--labels', str(f), '--output', str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    with rasterio.open(out) as ds: assert np.array_equal(ds.read(), render_scene(g, labels=str(f), seed=0).img)

def test_dcd_chips_synthetic(tmp_path):
    "dcd_chips --source synthetic makes chips of the real sites; each chip is exactly the synthetic scene of its grid."
    if importlib.util.find_spec('datacenter_detector.chips') is None:
        pytest.skip('datacenter_detector.chips is not present: the dcd_chips CLI cannot be tested')
    tiny = tmp_path/'tiny.geojson'
    raw = gpd.read_file(LABELS); raw[raw.fid.isin([1, 58])].to_file(tiny, driver='GeoJSON')
    out = tmp_path/'chips'
    p = subprocess.run([_cli('dcd_chips'), '--labels', str(tiny), '--source', 'synthetic', '--output-dir', str(out),
                        '--chip-size', '128', '--n-jitter', '1', '--no-progress'], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    idx = gpd.read_file(out/'index.geojson')
    assert {'positive', 'hard_negative'} <= set(idx.kind)
    for r in idx[idx.kind == 'positive'].itertuples():
        with rasterio.open(out/r.path) as ds:
            arr, g = ds.read(), Grid(ds.crs, ds.transform, ds.width, ds.height)
        sc = render_scene(g, labels=str(tiny), seed=0)
        assert np.array_equal(arr, sc.img), r.chip_id
        assert (sc.mask() == 1).any(), r.chip_id      # a positive chip shows data-center roof
