"Labels: the real label file through QA and splits, bad files, atomic saves, the reviewer's draw events, the dcd_labels CLI."
import json, subprocess, sys, warnings
from pathlib import Path
from unittest.mock import patch
import numpy as np, pandas as pd, geopandas as gpd, shapely, pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from datacenter_detector.core import LABELS, repo_dir, utm_epsg
from datacenter_detector.labels import (load_labels, label_qa, qa_text, assign_splits, site_ids, save_labels, areas_m2,
                                        LabelReviewer, LabelWarning, CLASSES, dcd_labels)

REPO = repo_dir(Path(__file__).parent)
BIN = Path(sys.executable).parent

def gj(path, feats, crs='urn:ogc:def:crs:OGC:1.3:CRS84'):
    d = dict(type='FeatureCollection', features=[dict(type='Feature', properties=p, geometry=g) for p, g in feats])
    if crs: d['crs'] = dict(type='name', properties=dict(name=crs))
    Path(path).write_text(json.dumps(d)); return Path(path)

def sq(x, y, d=0.001): return dict(type='Polygon', coordinates=[[[x, y], [x+d, y], [x+d, y+d], [x, y+d], [x, y]]])

@pytest.fixture(scope='module')
def real():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        gdf = load_labels(REPO/'data/datacenters.geojson')
    return gdf, [str(x.message) for x in w if issubclass(x.category, LabelWarning)]

def test_real_file_normalised(real):
    gdf, msgs = real
    raw = gpd.read_file(REPO/'data/datacenters.geojson')
    assert len(gdf) == len(raw) == 190
    assert gdf.crs.to_epsg() == 4326 and list(gdf.columns) == ['fid', 'class', 'name', 'label', 'geometry']
    assert gdf['class'].value_counts().to_dict() == dict(datacenter=79, warehouse=41, retail=36, other=34)
    assert (gdf['label'] == (gdf['class'] == 'datacenter')).all()
    # the one misspelt class is fixed, and the warning names the feature
    fid = int(raw.loc[raw['class'] == 'datacemter', 'fid'].iloc[0]); name = raw.loc[raw['fid'] == fid, 'name'].iloc[0]
    assert len(msgs) == 1 and 'datacemter' in msgs[0] and f'fid {fid}' in msgs[0] and name in msgs[0]
    assert gdf.set_index('fid').loc[fid, 'class'] == 'datacenter'
    # geometry untouched for valid polygons
    assert all(a.equals_exact(b, 1e-12) for a, b in zip(gdf.geometry, raw.geometry))

def test_real_qa_report_no_silent_drops(real):
    gdf, _ = real
    qa = label_qa(gdf)
    t = qa['table']
    assert t.loc['all', 'count'] == qa['n_read'] == qa['n_kept'] == 190
    assert t.loc[list(CLASSES), 'count'].sum() == 190
    assert qa['dropped'] == [] and qa['repaired'] == [] and len(qa['fixed']) == 1
    # areas in m² computed in UTM agree with an independent equal-area computation
    ea = gdf.to_crs('ESRI:102003').area  # USA Contiguous Albers Equal Area
    assert np.allclose(areas_m2(gdf), ea, rtol=0.01)
    assert abs(t.loc['all', 'area_total_m2'] - ea.sum()) / ea.sum() < 0.005
    txt = qa_text(qa)
    assert 'datacemter' in txt and '190 read, 190 kept' in txt

def test_drops_are_reported(tmp_path):
    f = gj(tmp_path/'l.geojson', [({'fid': 1, 'class': 'retail', 'name': 'a'}, sq(-77.4, 39.0)),
                                  ({'fid': 2, 'class': 'retail', 'name': 'empty one'}, dict(type='Polygon', coordinates=[])),
                                  ({'fid': 3, 'class': 'retail', 'name': 'null one'}, None)])
    with pytest.warns(LabelWarning) as w: gdf = load_labels(f)
    assert gdf['fid'].tolist() == [1]
    qa = label_qa(gdf)
    assert qa['n_read'] == 3 and qa['n_kept'] == 1 and len(qa['dropped']) == 2
    assert "'empty one'" in qa_text(qa) and "'null one'" in qa_text(qa)
    assert sum('dropped' in str(x.message) for x in w) == 2

def test_duplicates_and_overlaps_reported(tmp_path):
    f = gj(tmp_path/'l.geojson', [({'fid': 1, 'class': 'datacenter', 'name': 'a'}, sq(-77.4, 39.0)),
                                  ({'fid': 2, 'class': 'datacenter', 'name': 'a again'}, sq(-77.4, 39.0)),
                                  ({'fid': 3, 'class': 'retail', 'name': 'shop'}, sq(-77.3995, 39.0))])
    qa = label_qa(load_labels(f))
    assert qa['duplicates'][['fid_a', 'fid_b']].values.tolist() == [[1, 2]]
    assert qa['overlaps'][['fid_a', 'fid_b']].values.tolist() == [[1, 3], [2, 3]] and qa['overlaps']['pos_neg'].all()
    assert 'duplicates: 1' in qa_text(qa) and 'overlaps: 2 (2 between a data center and a negative)' in qa_text(qa)

@pytest.mark.parametrize('feats,crs,msg', [
    ([({'class': 'datacenter'}, sq(-77.4, 39.0))], None, 'declares no CRS'),
    ([], 'urn:ogc:def:crs:OGC:1.3:CRS84', 'no features'),
    ([({'class': 'datacenter'}, dict(type='LineString', coordinates=[[-77.4, 39.0], [-77.39, 39.0]]))], 'urn:ogc:def:crs:OGC:1.3:CRS84', 'not polygons'),
    ([({'class': 'stadium', 'name': 'x'}, sq(-77.4, 39.0))], 'urn:ogc:def:crs:OGC:1.3:CRS84', "'stadium'"),
    ([({'class': 'retail'}, sq(500000, 4300000, 100))], 'urn:ogc:def:crs:OGC:1.3:CRS84', 'not degrees'),
])
def test_bad_files(tmp_path, feats, crs, msg):
    with pytest.raises((ValueError, FileNotFoundError), match=msg): load_labels(gj(tmp_path/'bad.geojson', feats, crs))

def test_projected_file_reprojected(tmp_path):
    x, y = 300000, 4320000
    f = gj(tmp_path/'utm.geojson', [({'class': 'retail'}, dict(type='Polygon', coordinates=[[[x, y], [x+100, y], [x+100, y+50], [x, y+50], [x, y]]]))], 'EPSG:32618')
    gdf = load_labels(f)
    assert gdf.crs.to_epsg() == 4326 and abs(areas_m2(gdf).iloc[0] - 5000) < 5
    assert -78 < gdf.geometry.iloc[0].centroid.x < -77

def test_geopackage_roundtrip(tmp_path, real):
    gdf = assign_splits(real[0])
    back = load_labels(save_labels(gdf, tmp_path/'l.gpkg'))
    assert back[['fid', 'class', 'name', 'label', 'site_id', 'split']].equals(gdf[['fid', 'class', 'name', 'label', 'site_id', 'split']])

def test_save_is_atomic(tmp_path, real):
    p = save_labels(real[0], tmp_path/'l.geojson'); before = p.read_bytes()
    with patch.object(gpd.GeoDataFrame, 'to_file', side_effect=OSError('disk full')):
        with pytest.raises(OSError): save_labels(real[0].iloc[:3], p)
    assert p.read_bytes() == before and sorted(x.name for x in tmp_path.iterdir()) == ['l.geojson']

# --- splits

def _min_cross_split_m(gdf):
    best = np.inf
    for i, r in gdf.iterrows():
        c = r.geometry.centroid; epsg = utm_epsg(c.x, c.y)
        other = gdf[gdf['split'] != r['split']]
        if len(other): best = min(best, other.to_crs(epsg).distance(gpd.GeoSeries([r.geometry], crs=4326).to_crs(epsg).iloc[0]).min())
    return best

@pytest.mark.parametrize('seed', [0, 1, 2])
def test_real_splits_geographic(real, seed):
    sp = assign_splits(real[0], distance_km=2, seed=seed)
    assert sp.groupby('site_id')['split'].nunique().max() == 1
    assert set(sp['split']) == {'train', 'val', 'test'}
    assert _min_cross_split_m(sp) > 2000
    assert sp['split'].tolist() == assign_splits(real[0], distance_km=2, seed=seed)['split'].tolist()
    n = sp['split'].value_counts()
    assert n['train'] > n['val'] and n['train'] > n['test']

def test_site_distance_in_metres():
    # two squares 1.5 km apart (edge to edge) at 47°N, where 0.001° of longitude is ~76 m: metres decide, not degrees
    lon0, lat = -119.8, 47.0
    d_deg = 1500/(111320*np.cos(np.deg2rad(lat)))
    g = gpd.GeoDataFrame(geometry=[shapely.box(lon0, lat, lon0+0.001, lat+0.001), shapely.box(lon0+0.001+d_deg, lat, lon0+0.002+d_deg, lat+0.001)], crs=4326)
    assert site_ids(g, 1.6).tolist() == [0, 0]
    assert site_ids(g, 1.4).tolist() == [0, 1]

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(-0.3, 0.3), st.floats(-0.3, 0.3)), min_size=2, max_size=30),
       st.floats(0.5, 10), st.integers(0, 5))
def test_no_site_crosses_splits(pts, km, seed):
    g = gpd.GeoDataFrame(dict(fid=range(1, len(pts)+1), label=[i % 3 == 0 for i in range(len(pts))]),
                         geometry=[shapely.Point(-100+x, 40+y).buffer(0.0005) for x, y in pts], crs=4326)
    sp = assign_splits(g, distance_km=km, seed=seed)
    assert sp.groupby('site_id')['split'].nunique().max() == 1
    u = sp.to_crs(utm_epsg(-100, 40))
    for i in range(len(u)):
        d = u.distance(u.geometry.iloc[i])
        assert (sp['split'][d <= km*1000*0.999] == sp['split'].iloc[i]).all()

def test_bad_ratios(real):
    with pytest.raises(ValueError, match='summing to 1'): assign_splits(real[0], ratios=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match='distance_km'): assign_splits(real[0], distance_km=0)

# --- reviewer (simulated draw events)

def test_reviewer_draw_events(tmp_path):
    f = gj(tmp_path/'r.geojson', [({'fid': 1, 'class': 'datacenter', 'name': 'a'}, sq(-77.4, 39.0)),
                                  ({'fid': 7, 'class': 'retail', 'name': 'b'}, sq(-77.39, 39.0))])
    rv = LabelReviewer(f)
    assert {d['properties']['fid'] for d in rv.draw.data} == {1, 7}
    rv.picker.value = 'other'; rv.name.value = 'lot'
    bow = dict(type='Polygon', coordinates=[[[-77.38, 39.0], [-77.37, 39.01], [-77.37, 39.0], [-77.38, 39.01], [-77.38, 39.0]]])
    rv.on_draw(rv.draw, 'created', dict(type='Feature', properties={'style': {}}, geometry=bow))  # self-intersecting: repaired
    new = rv.gdf.iloc[-1]
    assert (new['fid'], new['class'], new['name'], new['label']) == (8, 'other', 'lot', False) and new.geometry.is_valid
    rv.on_draw(rv.draw, 'edited', dict(type='Feature', properties={'fid': 99}, geometry=sq(0, 0)))
    assert 'unknown feature' in rv.log[-1] and len(rv.gdf) == 3
    rv.on_draw(rv.draw, 'created', dict(type='Feature', properties={}, geometry=dict(type='LineString', coordinates=[[0, 0], [1, 1]])))
    assert len(rv.gdf) == 3
    rv.on_draw(rv.draw, 'edited', dict(type='Feature', properties={'fid': 1}, geometry=sq(-77.4, 39.0, 0.002)))
    rv.on_draw(rv.draw, 'deleted', dict(type='Feature', properties={'fid': 7}, geometry=sq(-77.39, 39.0)))
    rv.relabel(8, 'warehouse')
    rv.save()
    back = load_labels(f)
    assert back[['fid', 'class', 'name', 'label']].values.tolist() == [[1, 'datacenter', 'a', True], [8, 'warehouse', 'lot', False]]
    assert abs(areas_m2(back).iloc[0] / areas_m2(load_labels(gj(tmp_path/'x.geojson', [({'class': 'retail'}, sq(-77.4, 39.0, 0.002))]))).iloc[0] - 1) < 1e-6
    with pytest.raises(KeyError): rv.relabel(123)

# --- CLI

def test_cli(tmp_path):
    out = tmp_path/'labels_qa.geojson'
    r = subprocess.run([BIN/'dcd_labels', '--labels', str(REPO/'data/datacenters.geojson'), '--output', str(out)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "class 'datacemter' normalised to 'datacenter'" in r.stdout and '190 read, 190 kept' in r.stdout
    gdf = load_labels(out)
    assert len(gdf) == 190 and {'site_id', 'split'} <= set(gdf.columns)
    assert gdf.groupby('site_id')['split'].nunique().max() == 1

def test_cli_bad_file_writes_nothing(tmp_path):
    f = gj(tmp_path/'nocrs.geojson', [({'class': 'datacenter'}, sq(-77.4, 39.0))], crs=None)
    out = tmp_path/'out.geojson'
    r = subprocess.run([BIN/'dcd_labels', '--labels', str(f), '--output', str(out)], capture_output=True, text=True)
    assert r.returncode != 0 and 'declares no CRS' in r.stderr and '--assume-crs' in r.stderr
    assert not out.exists()
    r = subprocess.run([BIN/'dcd_labels', '--labels', str(f), '--output', str(out), '--assume-crs', 'EPSG:4326'], capture_output=True, text=True)
    assert r.returncode == 0 and out.exists(), r.stderr
