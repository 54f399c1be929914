"""datacenter_detector.chips end to end: coverage of every positive, hard negatives, background, geographic splits,
chip files matching the index, determinism, bad input, and the dcd_chips CLI."""
import json, os, subprocess, sys, warnings
from pathlib import Path
import numpy as np, geopandas as gpd, pytest, rasterio, shapely
from shapely.geometry import box
from datacenter_detector.core import Grid, BAND_NAMES, LABELS, repo_dir
from datacenter_detector.chips import make_chips, plan_chips
from datacenter_detector.download import fetch, DownloadError
from datacenter_detector.labels import load_labels, assign_splits

ND = repo_dir(Path(__file__).parent)/'data'/'naip'/'opengeos_m_4709963_se_14_1_20200831.tif'
BIN = Path(sys.executable).parent
CONTRACT = ['chip_id', 'path', 'split', 'kind', 'site_id', 'labels', 'source', 'crs', 'width', 'height']

def nd_labels():
    "Made-up labels inside the real North Dakota tile (no data center is there): two sites ~2.5 km apart."
    with rasterio.open(ND) as src: lon, lat = src.lnglat()
    g = [box(lon-0.0220, lat-0.0010, lon-0.0195, lat+0.0012),  # site A (1.6 km west): a 'data center' ~190 x 245 m
         box(lon-0.0185, lat-0.0005, lon-0.0175, lat+0.0002),  # site A: a 'warehouse' 76 m east of it
         box(lon+0.0120, lat-0.0005, lon+0.0132, lat+0.0005),  # site B (2.2 km east of A): a 'data center'
         box(lon+0.0140, lat-0.0003, lon+0.0148, lat+0.0003)]  # site B: 'retail'
    return gpd.GeoDataFrame(dict(fid=[1, 2, 3, 4], **{'class': ['datacenter', 'warehouse', 'datacenter', 'retail']},
                                 name=['dc_a', 'wh_a', 'dc_b', 'rt_b'], label=[True, False, True, False]), geometry=g, crs=4326)

@pytest.fixture(scope='module')
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp('chips')
    lab = nd_labels()
    idx = make_chips(lab, 'local', d, chip_size=64, res=2.0, n_jitter=2, neg_ratio=1.0, bg_ratio=1.0, seed=3,
                     ratios=(0.5, 0.5, 0.0), bg_range=(150, 500), inputs=[ND])
    return d, lab, idx

def test_index_contract_and_files(made):
    d, lab, idx = made
    back = gpd.read_file(d/'index.geojson')
    assert list(back.columns[:10]) == CONTRACT and back.crs.to_epsg() == 4326 and len(back) == len(idx)
    assert set(back['kind']) == {'positive', 'hard_negative', 'background'}
    assert sorted(p.name for p in d.glob('*.tif')) == sorted(back['path'])
    for r in back.itertuples():
        with rasterio.open(d/r.path) as src:
            assert (src.count, src.dtypes[0], src.nodata, src.descriptions) == (4, 'uint8', 0, BAND_NAMES)
            assert (src.width, src.height, src.crs.to_epsg()) == (r.width, r.height, r.crs) == (64, 64, 32614)
            assert src.tags()['kind'] == r.kind and src.tags()['split'] == r.split and src.tags()['source'] == 'local'
            g = Grid(src.crs, src.transform, src.width, src.height)
            assert shapely.equals_exact(box(*g.lonlat_bounds()), r.geometry, tolerance=1e-9)   # index footprint = chip
            if r.Index < 3:   # pixels: exactly what download.fetch gives on the chip's grid
                np.testing.assert_array_equal(src.read(), fetch(g, 'local', inputs=ND, progress=False)[0])

def test_every_positive_covered_with_jitter(made):
    d, lab, idx = made
    for fid in lab.loc[lab.label, 'fid']:
        chips = idx[(idx.kind == 'positive') & (idx.fid == fid)]
        poly = lab.loc[lab.fid == fid].geometry.iloc[0]
        # each of the n_jitter=2 coverings covers the polygon: the union covers it, and there are at least 2 chips per part
        assert shapely.union_all(chips.geometry.values).buffer(1e-7).contains(poly), fid
        assert len(chips) >= 2
    starts = idx[idx.kind == 'positive'].geometry.bounds[['minx', 'miny']].round(7)
    assert len(starts.drop_duplicates()) == len(starts)   # jittered coverings differ

def test_negatives_and_background(made):
    d, lab, idx = made
    neg = idx[idx.kind == 'hard_negative']
    assert len(neg) == (idx.kind == 'positive').sum()                       # neg_ratio=1
    assert set(neg.fid) == set(lab.loc[~lab.label, 'fid'])                  # every hard negative has chips
    bg = idx[idx.kind == 'background']
    assert len(bg) == (idx.kind == 'positive').sum()                        # bg_ratio=1
    assert (bg.labels == '').all() and not bg.geometry.intersects(shapely.union_all(lab.geometry.values)).any()
    assert (idx[idx.kind != 'background'].labels.str.len() > 0).all()

def test_splits_geographic(made):
    d, lab, idx = made
    sp = assign_splits(lab, ratios=(0.5, 0.5, 0.0))
    assert sp.site_id.nunique() == 2 and set(sp.split) == {'train', 'val'}
    assert (idx.groupby('site_id')['split'].nunique() == 1).all()            # one split per site
    site_of = dict(zip(sp.name, sp.site_id))
    for r in idx[idx.labels != ''].itertuples():                          # labels a chip touches are of its site
        assert {site_of[n] for n in r.labels.split(',')} == {r.site_id}
    assert dict(zip(sp.site_id, sp.split)) == dict(zip(idx.site_id, idx.split))

def test_deterministic_and_seeded():
    lab = assign_splits(nd_labels())
    a, b, c = plan_chips(lab, 64, 2.0, seed=1), plan_chips(lab, 64, 2.0, seed=1), plan_chips(lab, 64, 2.0, seed=2)
    assert a.equals(b) and not a[['x', 'y']].equals(c[['x', 'y']])

def test_real_labels_plan_covers_all():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        real = assign_splits(load_labels(LABELS))
    plan = plan_chips(real)
    assert set(plan.loc[plan.kind == 'positive', 'fid']) == set(real.loc[real.label, 'fid'])
    assert set(plan.loc[plan.kind == 'hard_negative', 'fid']) == set(real.loc[~real.label, 'fid'])
    assert (plan.groupby('site_id')['split'].nunique() == 1).all() and set(plan.split) == {'train', 'val', 'test'}

def test_synthetic_chips_of_one_site(tmp_path):
    pytest.importorskip('datacenter_detector.synth')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        real = assign_splits(load_labels(LABELS))
    site = real[real.site_id == real.loc[real.label, 'site_id'].value_counts().idxmin()]
    idx = make_chips(site, 'synthetic', tmp_path, chip_size=64, res=2.4, n_jitter=1, bg_ratio=0.5)
    assert set(idx.source) == {'synthetic'} and idx.split.nunique() == 1
    assert set(idx.loc[idx.kind == 'positive', 'fid']) == set(site.loc[site.label, 'fid'])
    with rasterio.open(tmp_path/idx.path.iloc[0]) as src: assert src.read().std() > 5   # an image, not a constant

def test_no_overlap_and_bad_input(tmp_path):
    with pytest.raises(DownloadError, match='No chip could be made'):   # real labels are nowhere near the ND tile
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            make_chips(load_labels(LABELS).head(12), 'local', tmp_path/'x', chip_size=32, n_jitter=1, neg_ratio=0, bg_ratio=0, inputs=[ND])
    assert not (tmp_path/'x'/'index.geojson').exists()
    neg_only = nd_labels().query('not label')
    with pytest.raises(ValueError, match='No data-center label'): make_chips(neg_only, 'local', tmp_path/'y', inputs=[ND])

def test_cli(tmp_path):
    lab = tmp_path/'labels.geojson'; nd_labels().to_file(lab, driver='GeoJSON')
    r = subprocess.run([str(BIN/'dcd_chips'), '--labels', str(lab), '--source', 'local', '--inputs', str(ND),
                        '--output-dir', str(tmp_path/'chips'), '--chip-size', '48', '--res', '2.5', '--n-jitter', '1',
                        '--neg-ratio', '0.5', '--bg-ratio', '0.25', '--seed', '4'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    idx = gpd.read_file(tmp_path/'chips'/'index.geojson')
    assert set(idx.kind) == {'positive', 'hard_negative', 'background'} and (idx.width == 48).all()
    assert 'chips in' in r.stdout
    r = subprocess.run([str(BIN/'dcd_chips'), '--labels', str(tmp_path/'missing.geojson'), '--output-dir', str(tmp_path/'c2')],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'missing.geojson' in r.stderr and 'Traceback' not in r.stderr

def test_network_down_stops_early_and_resume(tmp_path):
    "A STAC API that is down: each chip's search fails after retries; the run stops after max_fail in a row."
    sys.path.insert(0, str(Path(__file__).parent))
    from stac_server import StacServer
    with StacServer() as s: url = s.url            # nothing listens there any more
    lab = nd_labels()
    with pytest.raises(DownloadError, match='3 chips in a row failed on the network.*resume'):
        make_chips(lab, 'stac', tmp_path, chip_size=32, res=4.0, n_jitter=1, max_fail=3, url=url, collection='naip',
                   retries=0, backoff=0)
    assert not (tmp_path/'index.geojson').exists()
    # resume: chips made by a first (local) run are reused, not fetched again, and the index is identical
    a = make_chips(lab, 'local', tmp_path/'r', chip_size=32, res=4.0, n_jitter=1, inputs=[ND])
    (tmp_path/'r'/'index.geojson').unlink()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path/'r').glob('*.tif')}
    b = make_chips(lab, 'local', tmp_path/'r', chip_size=32, res=4.0, n_jitter=1, resume=True, inputs=[ND])
    assert list(a.chip_id) == list(b.chip_id) and a.geometry.equals(b.geometry)
    assert mtimes == {p.name: p.stat().st_mtime_ns for p in (tmp_path/'r').glob('*.tif')}   # nothing rewritten
