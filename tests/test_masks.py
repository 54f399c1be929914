"Masks: real SpaceNet round trip, alignment with chips, metric buffers, bad input (clear errors, nothing half written), the dcd_masks CLI."
import json, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pandas as pd, geopandas as gpd, shapely, rasterio, pytest
from rasterio.windows import Window
from datacenter_detector.core import Grid, write_raster, repo_dir, LABELS
from datacenter_detector.labels import load_labels, LabelWarning, areas_m2
from datacenter_detector.masks import (make_masks, mask_labels, rasterize_mask, mask_polygons, chip_grid, list_chips, IGNORE)

REPO = repo_dir(Path(__file__).parent)
SN = REPO/'data/spacenet'
BIN = Path(sys.executable).parent

@pytest.fixture(scope='module')
def labels():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', LabelWarning); return load_labels(REPO/'data/datacenters.geojson')

@pytest.fixture(scope='module')
def buildings():
    b = gpd.read_file(SN/'geotiff_labels.geojson')[['geometry']]
    return b.assign(fid=np.arange(1, len(b)+1), name=[f'b{i}' for i in range(len(b))], label=True)

def chip(path, grid, arr=None, nodata=0, crs='grid'):
    arr = np.full((4, *grid.shape), 100, np.uint8) if arr is None else arr
    if crs is None:
        with rasterio.open(path, 'w', driver='GTiff', width=grid.width, height=grid.height, count=arr.shape[0], dtype=arr.dtype,
                           transform=grid.transform) as d: d.write(arr)
        return Path(path)
    return write_raster(path, arr, grid.transform, grid.crs if crs == 'grid' else crs, nodata=nodata)

def ashburn(size=256, res=0.6): return Grid.around(-77.4395, 39.0030, size=size, res=res)

# --- real-data round trip

def test_spacenet_round_trip(buildings):
    "Polygons -> mask -> polygons on SpaceNet's exact 0.5 m grid: only pixel quantisation at the outlines remains."
    grid, valid = chip_grid(SN/'sample_geotiff.tif')
    assert grid.res == 0.5 and grid.crs.to_epsg() == 32616
    msk, info = rasterize_mask(mask_labels(buildings, buffer_m=0), grid, valid)
    assert sorted(info['pos']) == list(range(1, 44))
    back = mask_polygons(msk, grid)
    half_diag = grid.res/np.sqrt(2)
    ious = []
    for b in buildings.geometry:
        u = back[back.intersects(b)].union_all()
        ious.append(b.intersection(u).area/b.union(u).area)
        # exactness: every pixel error lies within half a pixel diagonal of the true outline (no shift, no flip)
        assert b.symmetric_difference(u).difference(b.boundary.buffer(half_diag + 1e-6)).area == 0
    ious = np.array(ious); area = buildings.area.values; ratio = buildings.length.values*grid.res/area
    # IoU >= 0.95 for every building whose outline/area allows it at 0.5 m (and for all >= 150 m²);
    # small or jagged ones are held to twice the expected quantisation loss (outline x res / 4)
    assert (ious[(ratio <= 0.15) | (area >= 150)] >= 0.95).all()
    assert (ious >= 1 - ratio/2).all() and np.median(ious) >= 0.95
    # total area preserved within 1%
    assert abs((msk == 1).sum()*grid.res**2 - area.sum())/area.sum() < 0.01

def test_spacenet_chips_aligned(tmp_path, buildings):
    "Masks of real chips cut from the SpaceNet image sit pixel for pixel on their chips, with provenance."
    chips = tmp_path/'chips'
    with rasterio.open(SN/'sample_geotiff.tif') as src:
        for i, (r0, c0) in enumerate([(0, 0), (300, 300), (600, 100)]):
            w = Window(c0, r0, 200, 250)
            write_raster(chips/f'sn{i}.tif', src.read(window=w), src.window_transform(w), src.crs, nodata=src.nodata)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', LabelWarning)
        rep = make_masks(chips, buildings, tmp_path/'masks', buffer_m=0, progress=False, verbose=False)
    full, _ = rasterize_mask(mask_labels(buildings, buffer_m=0), chip_grid(SN/'sample_geotiff.tif')[0])
    for i, (r0, c0) in enumerate([(0, 0), (300, 300), (600, 100)]):
        with rasterio.open(chips/f'sn{i}.tif') as c, rasterio.open(tmp_path/f'masks/sn{i}.tif') as m:
            assert (m.crs, m.transform, m.width, m.height, m.count, m.dtypes[0]) == (c.crs, c.transform, c.width, c.height, 1, 'uint8')
            assert m.tags()['buffer_m'] == '0' and 'version' in m.tags()
            assert m.tags(ns='IMAGE_STRUCTURE').get('LAYOUT') == 'COG' and m.nodata is None
            assert (m.read(1) == full[r0:r0+250, c0:c0+200]).all()  # identical to the full image's mask: no seams
    assert rep['positive_px'].sum() == sum(int((full[r:r+250, c:c+200] == 1).sum()) for r, c in [(0, 0), (300, 300), (600, 100)])

# --- metric buffers, ignore ring, nodata

def test_buffer_in_metres_any_label_crs(tmp_path, labels):
    "7.5 m is 7.5 m whether the labels come in lon/lat, UTM or Web Mercator; labels are reprojected, and it is said."
    g = ashburn(400, 1.0)
    dc = labels[labels['fid'] == 1]
    masks = {}
    for crs in (4326, 32618, 3857):
        masks[crs], _ = rasterize_mask(mask_labels(dc.to_crs(crs), buffer_m=7.5), g)
    assert (masks[4326] != masks[32618]).sum() <= 4 and (masks[4326] != masks[3857]).sum() <= 4
    poly = dc.to_crs(g.crs).geometry.iloc[0]
    want = poly.buffer(7.5).intersection(shapely.box(*g.bounds)).area
    assert abs((masks[4326] == 1).sum() - want) / want < 0.01
    chip(tmp_path/'c/a.tif', g)
    f = tmp_path/'l3857.geojson'; dc.to_crs(3857).to_file(f, driver='GeoJSON')
    import io, contextlib
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter('ignore', LabelWarning)
        rep = make_masks(tmp_path/'c', f, tmp_path/'m', buffer_m=7.5, progress=False)
    assert 'reprojected from EPSG:3857 to' in out.getvalue() and 'EPSG:32618' in out.getvalue()
    with rasterio.open(tmp_path/'m/a.tif') as m: r = m.read(1)
    ref, _ = rasterize_mask(mask_labels(dc, 7.5), chip_grid(tmp_path/'c/a.tif')[0])
    assert (r == 1).sum() > 1000 and (r != ref).sum() <= 4

def test_ignore_ring_width(labels):
    g = ashburn(400, 0.5)
    dc = labels[labels['fid'] == 1]
    m, _ = rasterize_mask(mask_labels(dc, buffer_m=0, ignore_m=2.0), g)
    poly = dc.to_crs(g.crs).geometry.iloc[0]
    ring = poly.boundary.buffer(2.0).intersection(shapely.box(*g.bounds)).area
    assert abs((m == IGNORE).sum()*0.25 - ring)/ring < 0.03
    inner = poly.buffer(-2.0).area
    assert abs((m == 1).sum()*0.25 - inner)/inner < 0.02  # the ring eats into the polygon: 1 only well inside

def test_nodata_is_ignore(tmp_path, labels):
    g = ashburn(128)
    arr = np.full((4, 128, 128), 90, np.uint8); arr[:, 40:60, :] = 0
    chip(tmp_path/'c/a.tif', g, arr)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', LabelWarning)
        make_masks(tmp_path/'c', labels, tmp_path/'m', progress=False, verbose=False)
    with rasterio.open(tmp_path/'m/a.tif') as m: r = m.read(1)
    assert (r[40:60] == IGNORE).all() and set(np.unique(r[:40])) <= {0, 1} and (r == 1).sum() > 1000

def test_negatives_are_zero_and_positive_wins(tmp_path):
    g = ashburn(200, 1.0); x0, y0 = g.bounds[:2]
    gdf = gpd.GeoDataFrame(dict(fid=[1, 2, 3], name=['dc', 'mall', 'barn'], label=[True, False, False]),
                           geometry=[shapely.box(x0+20, y0+20, x0+80, y0+80), shapely.box(x0+60, y0+20, x0+120, y0+80),
                                     shapely.box(x0+140, y0+140, x0+180, y0+180)], crs=g.crs)
    chip(tmp_path/'c/a.tif', g)
    with pytest.warns(LabelWarning, match=r"overlap.*fid 1 \('dc'\) x fid 2 \('mall'\)"):
        rep = make_masks(tmp_path/'c', gdf, tmp_path/'m', buffer_m=0, progress=False, verbose=False)
    assert rep.attrs['pos_neg'] == [(1, 2)]
    with rasterio.open(tmp_path/'m/a.tif') as m: r = m.read(1)[::-1]  # row 0 = south
    assert (r[20:80, 20:80] == 1).all()        # the data center, overlap included
    assert (r[20:80, 80:120] == 0).all()       # the rest of the mall is 0
    assert (r[140:180, 140:180] == 0).all()    # negatives are 0, not ignore
    assert (r == 1).sum() == 3600

# --- bad input: a clear error, nothing written

def _nothing(tmp_path): return not (tmp_path/'out').exists() or not any((tmp_path/'out').iterdir())

def test_chip_without_crs(tmp_path, labels):
    g = ashburn(64)
    chip(tmp_path/'c/a_ok.tif', g); chip(tmp_path/'c/b_nocrs.tif', g, crs=None)
    with pytest.raises(ValueError, match=r'b_nocrs\.tif has no CRS.*-a_srs'):
        make_masks(tmp_path/'c', labels, tmp_path/'out', progress=False)
    assert _nothing(tmp_path)

def test_chip_in_degrees(tmp_path, labels):
    chip(tmp_path/'c/geo.tif', Grid.around(-77.4395, 39.0030, 32, 1e-5, crs=4326))
    with pytest.raises(ValueError, match='geographic CRS'): make_masks(tmp_path/'c', labels, tmp_path/'out', progress=False)
    assert _nothing(tmp_path)

@pytest.mark.parametrize('buf,ign,msg', [(0.0001, 0, 'looks like degrees'), (7.5, 0.00005, 'ignore=5e-05 looks like degrees'), (-1, 0, '>= 0')])
def test_buffer_in_degrees(tmp_path, labels, buf, ign, msg):
    chip(tmp_path/'c/a.tif', ashburn(64))
    with pytest.raises(ValueError, match=msg): make_masks(tmp_path/'c', labels, tmp_path/'out', buffer_m=buf, ignore_m=ign, progress=False)
    assert _nothing(tmp_path)

def test_empty_labels(tmp_path):
    chip(tmp_path/'c/a.tif', ashburn(64))
    f = tmp_path/'empty.geojson'
    f.write_text(json.dumps(dict(type='FeatureCollection', crs=dict(type='name', properties=dict(name='urn:ogc:def:crs:OGC:1.3:CRS84')), features=[])))
    with pytest.raises(ValueError, match='no features'): make_masks(tmp_path/'c', f, tmp_path/'out', progress=False)
    with pytest.raises(ValueError, match='empty'): make_masks(tmp_path/'c', gpd.GeoDataFrame(dict(label=[]), geometry=[], crs=4326), tmp_path/'out', progress=False)
    assert _nothing(tmp_path)

def test_point_labels(tmp_path, labels):
    chip(tmp_path/'c/a.tif', ashburn(256, 1.0))
    pts = labels[labels['fid'] == 1].copy(); pts['geometry'] = pts.geometry.centroid
    with pytest.raises(ValueError, match='not polygons.*point_buffer_m'): make_masks(tmp_path/'c', pts, tmp_path/'out', progress=False)
    assert _nothing(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', LabelWarning)
        make_masks(tmp_path/'c', pts, tmp_path/'out', buffer_m=0, point_buffer_m=20, progress=False, verbose=False)
    with rasterio.open(tmp_path/'out/a.tif') as m: n = (m.read(1) == 1).sum()
    assert abs(n - np.pi*20**2) < 40

def test_labels_touching_no_chip_named(tmp_path, labels):
    chip(tmp_path/'c/a.tif', ashburn(64))
    with pytest.warns(LabelWarning, match=r"touch no chip.*fid 33 \('quincy_2'\)|touch no chip.*fid \d+ \('\w+'\)") as w:
        rep = make_masks(tmp_path/'c', labels, tmp_path/'out', progress=False, verbose=False)
    touched = set(rep['positives'].iloc[0]) | set(rep['negatives'].iloc[0])
    assert set(rep.attrs['untouched']) == set(labels['fid']) - touched and len(touched) >= 1
    msg = next(str(x.message) for x in w if 'touch no chip' in str(x.message))
    assert f"{len(labels) - len(touched)} of {len(labels)} labels" in msg

def test_index_geojson_and_missing_chip(tmp_path, labels):
    g = ashburn(64); chip(tmp_path/'c/x.tif', g); chip(tmp_path/'c/not_listed.tif', g)
    gpd.GeoDataFrame(dict(chip_id=['x'], path=['x.tif']), geometry=[shapely.box(*g.lonlat_bounds())], crs=4326).to_file(tmp_path/'c/index.geojson')
    assert list_chips(tmp_path/'c')['chip_id'].tolist() == ['x']
    gpd.GeoDataFrame(dict(chip_id=['x', 'y'], path=['x.tif', 'y.tif']), geometry=[shapely.box(*g.lonlat_bounds())]*2, crs=4326).to_file(tmp_path/'c/index.geojson')
    with pytest.raises(FileNotFoundError, match='y.tif'): make_masks(tmp_path/'c', labels, tmp_path/'out', progress=False)
    assert _nothing(tmp_path)

# --- CLI

def test_cli(tmp_path):
    chip(tmp_path/'chips/a.tif', ashburn(128)); chip(tmp_path/'chips/b.tif', Grid.around(-119.8, 47.2, 64))
    r = subprocess.run([BIN/'dcd_masks', '--chips-dir', str(tmp_path/'chips'), '--geojson', str(REPO/'data/datacenters.geojson'),
                        '--output-dir', str(tmp_path/'masks'), '--buffer', '7.5'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'wrote 2 masks' in r.stdout and 'reprojected from EPSG:4326' in r.stdout and 'touch no chip' in r.stderr
    with rasterio.open(tmp_path/'masks/a.tif') as m: assert (m.read(1) == 1).sum() > 1000

def test_cli_bad_buffer_writes_nothing(tmp_path):
    chip(tmp_path/'chips/a.tif', ashburn(64))
    r = subprocess.run([BIN/'dcd_masks', '--chips-dir', str(tmp_path/'chips'), '--geojson', str(LABELS),
                        '--output-dir', str(tmp_path/'masks'), '--buffer', '0.00007'], capture_output=True, text=True)
    assert r.returncode != 0 and 'looks like degrees' in r.stderr and not (tmp_path/'masks').exists()
