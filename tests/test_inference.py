"Inference end to end: bad inputs, seams, streaming equivalence, batch resume, Dask equivalence, CLIs."
import json, os, shutil, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pandas as pd, geopandas as gpd, pytest, rasterio, torch
from rasterio.warp import calculate_default_transform, reproject, Resampling
import datacenter_detector.inference as inf
from datacenter_detector.inference import (bright_roof_model, demo_scene, detect, batch_detect, predict_raster, predict_tiles,
                                           tile_starts, blend_weights, load_detector, COLUMNS)

BIN = Path(sys.executable).parent
ROOFS = ((60, 70, 50, 80), (150, 40, 40, 40), (200, 180, 70, 90))

@pytest.fixture(scope='module')
def mc(): return bright_roof_model()

@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    return demo_scene(tmp_path_factory.mktemp('scene')/'scene.tif', 320, roofs=ROOFS)

def outputs(d):
    return dict(output_geojson=d/'det.geojson', output_centroids=d/'cent.geojson', output_csv=d/'det.csv',
                output_mask=d/'mask.tif', output_prob=d/'prob.tif')

def no_files(d): return not d.exists() or not any(d.iterdir())

def read1(p):
    with rasterio.open(p) as ds: return ds.read(1)

# ---------------------------------------------------------------- detection is right on a known scene
def test_finds_the_roofs(tmp_path, scene, mc):
    gdf = detect(scene, *mc, **outputs(tmp_path), edge=5, tile_size=128, overlap=32)
    assert len(gdf) == 3
    want = sorted(h*w*0.36 for _, _, h, w in ROOFS)
    np.testing.assert_allclose(sorted(gdf.area_m2), want, rtol=0.08)
    assert list(gdf.columns[:-1]) == COLUMNS
    assert gdf.crs.to_epsg() == 4326 and gdf.lat.between(39, 39.1).all() and gdf.lon.between(-77.5, -77.47).all()
    cent = gpd.read_file(tmp_path/'cent.geojson')
    assert (cent.geom_type == 'Point').all() and len(cent) == 3
    csv = pd.read_csv(tmp_path/'det.csv', comment='#')
    np.testing.assert_allclose(csv.area_m2, gdf.area_m2)
    assert json.loads((tmp_path/'det.csv').read_text().splitlines()[0][len('# provenance: '):])['model'] == 'bright-roof-demo'
    with rasterio.open(tmp_path/'mask.tif') as m:
        assert m.tags()['model'] == 'bright-roof-demo' and m.profile['tiled'] and m.crs is not None
        assert abs(int(m.read(1).sum()) - sum(h*w for _, _, h, w in ROOFS)) < 0.05*sum(h*w for _, _, h, w in ROOFS)
    assert read1(tmp_path/'prob.tif').max() > 240
    assert not [p for p in tmp_path.iterdir() if '.tmp' in p.name]

def test_threshold_overrides_the_cards(tmp_path, scene, mc):
    "A higher probability threshold than the card's gives a mask inside the card's and smaller roofs; provenance records it; a non-probability is refused."
    lo, hi = tmp_path/'lo', tmp_path/'hi'
    a = detect(scene, *mc, output_mask=lo/'m.tif', output_csv=lo/'d.csv', edge=5, tile_size=128, overlap=32)
    b = detect(scene, *mc, output_mask=hi/'m.tif', output_csv=hi/'d.csv', edge=5, tile_size=128, overlap=32, threshold=0.95)
    ma, mb = read1(lo/'m.tif'), read1(hi/'m.tif')
    assert mb.sum() < ma.sum() and not (mb & ~ma).any()          # 0.95 keeps a subset of the card's 0.5
    assert len(a) == len(b) == 3 and b.area_m2.sum() < a.area_m2.sum()
    with rasterio.open(hi/'m.tif') as m: assert float(m.tags()['threshold']) == 0.95
    assert float(json.loads((hi/'d.csv').read_text().splitlines()[0][len('# provenance: '):])['threshold']) == 0.95
    with pytest.raises(ValueError, match=r"threshold 1.5 is not a probability.*card's rule: 0.5"): detect(scene, *mc, output_mask=tmp_path/'x.tif', threshold=1.5)
    assert not (tmp_path/'x.tif').exists()

def test_edge_filter_and_min_area(tmp_path, mc):
    s = demo_scene(tmp_path/'s.tif', 256, roofs=((10, 100, 40, 40), (120, 100, 40, 60), (200, 20, 12, 12)))
    test = lambda **kw: detect(s, *mc, tile_size=128, overlap=32, **kw)
    assert len(test(edge=0, min_area=0)) == 3
    assert len(test(edge=50, min_area=0)) == 1  # the roof at row 10 and the one at row 200 are near the edge
    assert len(test(edge=0, min_area=2000)) == 1
    assert len(test(edge=0, min_area=0, min_area_m2=400)) == 2  # 40x40 px = 576 m², 12x12 = 52 m²
    m, c = mc   # the model card's facility rule is the default, and an explicit value overrides it
    assert len(detect(s, m, dict(c, detect=dict(min_area_m2=400)), tile_size=128, overlap=32, edge=0, min_area=0)) == 2
    assert len(detect(s, m, dict(c, detect=dict(min_area_m2=400)), tile_size=128, overlap=32, edge=0, min_area=0, min_area_m2=0)) == 3
    hi = dict(c, detect=dict(threshold=0.999))   # the rule's threshold makes the mask and polygons (roof pixels are ~0.996)
    assert len(detect(s, m, hi, tile_size=128, overlap=32, edge=0, min_area=0, output_mask=tmp_path/'hi.tif')) == 0
    assert read1(tmp_path/'hi.tif').max() == 0
    sure = dict(c, detect=dict(min_score=0.9999))   # a minimum mean probability above the roofs' (~0.996) keeps none
    assert len(detect(s, m, sure, tile_size=128, overlap=32, edge=0, min_area=0)) == 0
    assert len(detect(s, m, sure, tile_size=128, overlap=32, edge=0, min_area=0, min_score=0)) == 3

def test_merge_distance(tmp_path, mc):
    s = demo_scene(tmp_path/'s.tif', 256, roofs=((100, 60, 50, 50), (100, 120, 50, 50)))  # 10 px = 6 m apart
    assert len(detect(s, *mc, edge=0, merge_distance=0, tile_size=128)) == 2
    one = detect(s, *mc, edge=0, merge_distance=15, tile_size=128)
    assert len(one) == 1 and one.area_px[0] > 4500

def test_regularize_rectangle(tmp_path, scene, mc):
    g = detect(scene, *mc, edge=5, regularize='rectangle', tile_size=128)
    assert (g.geometry.apply(lambda p: len(p.exterior.coords)) == 5).all()

def test_tta_and_vote(tmp_path, scene, mc):
    a = detect(scene, *mc, edge=5, tile_size=128)
    b = detect(scene, *mc, edge=5, tile_size=128, tta=True)
    c = detect(scene, *mc, edge=5, tile_size=128, blend='vote')
    np.testing.assert_allclose(a.area_m2, b.area_m2, rtol=0.01)
    np.testing.assert_allclose(a.area_m2, c.area_m2, rtol=0.03)

# ---------------------------------------------------------------- bad inputs: clear error, no partial output
def test_no_crs(tmp_path, mc):
    p = tmp_path/'nocrs.tif'
    arr = read_scene_array()
    with rasterio.open(p, 'w', driver='GTiff', width=arr.shape[2], height=arr.shape[1], count=4, dtype='uint8') as ds: ds.write(arr)
    out = tmp_path/'out'
    with pytest.raises(ValueError, match='has no CRS.*--pixel-coords'): detect(p, *mc, **outputs(out))
    assert no_files(out)
    with pytest.warns(UserWarning, match='no CRS'): g = detect(p, *mc, **outputs(out), pixel_coords=True, edge=5, tile_size=128)
    assert len(g) == 3 and g.crs is None and g.lat.isna().all()
    assert g.geometry.bounds.maxx.max() <= 320  # pixel coordinates
    assert json.loads((out/'det.geojson').read_text())['crs'] is None

def read_scene_array(size=320):
    import tempfile
    d = Path(tempfile.mkdtemp())
    with rasterio.open(demo_scene(d/'a.tif', size, roofs=ROOFS)) as ds: a = ds.read()
    shutil.rmtree(d)
    return a

def test_rgb_image_with_4band_model(tmp_path, mc):
    p = tmp_path/'rgb.tif'
    with rasterio.open(demo_scene(tmp_path/'a.tif', 128)) as s: prof, arr = s.profile, s.read([1, 2, 3])
    prof.update(count=3, driver='GTiff')
    with rasterio.open(p, 'w', **prof) as d: d.write(arr)
    out = tmp_path/'out'
    with pytest.raises(ValueError, match='has 3 band.*takes 4.*RGB model'): detect(p, *mc, **outputs(out))
    assert no_files(out)
    g = detect(p, *bright_roof_model(bands=('red', 'green', 'blue')), edge=0, tile_size=128)  # the RGB model takes it
    assert isinstance(g, gpd.GeoDataFrame)

def test_all_nodata(tmp_path, mc):
    p = demo_scene(tmp_path/'nd.tif', 200, nodata_cols=200)
    out = tmp_path/'out'
    with pytest.warns(UserWarning, match='only nodata'): g = detect(p, *mc, **outputs(out))
    assert len(g) == 0
    assert json.loads((out/'det.geojson').read_text())['features'] == []
    assert read1(out/'mask.tif').max() == 0 and read1(out/'prob.tif').max() == 0
    assert len(pd.read_csv(out/'det.csv', comment='#')) == 0

def test_nodata_tiles_skipped(tmp_path, mc):
    p = demo_scene(tmp_path/'half.tif', 512, roofs=((100, 300, 60, 60),), nodata_cols=256)
    st = predict_raster(p, *mc, mask_path=tmp_path/'m.tif', tile_size=128, overlap=0)
    assert st['tiles_skipped'] == 8 and st['tiles_run'] == 8
    assert read1(tmp_path/'m.tif')[:, :256].max() == 0

@pytest.mark.parametrize('kind', ['garbage', 'truncated'])
def test_unreadable_image(tmp_path, mc, kind):
    p = tmp_path/'bad.tif'
    if kind == 'garbage': p.write_bytes(b'not a tiff at all' * 100)
    else:
        good = demo_scene(tmp_path/'good.tif', 512)
        b = good.read_bytes(); p.write_bytes(b[:len(b)//2])
    out = tmp_path/'out'
    with pytest.raises(ValueError, match='bad.tif'): detect(p, *mc, **outputs(out))
    assert no_files(out)

def test_missing_image(tmp_path, mc):
    with pytest.raises(FileNotFoundError, match='does not exist'): detect(tmp_path/'nope.tif', *mc, output_geojson=tmp_path/'o.geojson')

def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'): load_detector(tmp_path/'nope')
    d = tmp_path/'ck'; d.mkdir()
    with pytest.raises(FileNotFoundError, match='model.json'): load_detector(d)
    (d/'model.json').write_text('{"name": "x", garbage'); (d/'model.safetensors').write_bytes(b'\0'*100)
    with pytest.raises(ValueError, match='corrupt'): load_detector(d)

def test_unwritable_output(tmp_path, scene, mc):
    blocker = tmp_path/'file'; blocker.write_text('x')  # a file where a folder should be (root ignores chmod)
    with pytest.raises(OSError, match='output folder'): detect(scene, *mc, output_geojson=blocker/'sub/out.geojson', output_mask=tmp_path/'m.tif')
    assert not (tmp_path/'m.tif').exists()

def test_epsg4326_areas(tmp_path, scene, mc):
    dst = tmp_path/'ll.tif'
    with rasterio.open(scene) as s:
        tr, w, h = calculate_default_transform(s.crs, 'EPSG:4326', s.width, s.height, *s.bounds)
        prof = s.profile | dict(crs='EPSG:4326', transform=tr, width=w, height=h, driver='GTiff')
        with rasterio.open(dst, 'w', **prof) as d:
            for b in range(1, 5): reproject(rasterio.band(s, b), rasterio.band(d, b), resampling=Resampling.nearest)
    a = detect(scene, *mc, edge=5, tile_size=128)
    b = detect(dst, *mc, edge=5, tile_size=128)
    assert len(a) == len(b) == 3
    np.testing.assert_allclose(sorted(b.area_m2), sorted(a.area_m2), rtol=0.05)  # m², not square degrees
    np.testing.assert_allclose(sorted(b.lat), sorted(a.lat), atol=2e-5)

# ---------------------------------------------------------------- seams and streaming
def test_seams(tmp_path, mc):
    s = demo_scene(tmp_path/'s.tif', 600, roofs=((50, 50, 200, 150), (300, 260, 180, 250), (100, 400, 90, 120)))
    predict_raster(s, *mc, mask_path=tmp_path/'a.tif', tile_size=128, overlap=32)
    predict_raster(s, *mc, mask_path=tmp_path/'b.tif', tile_size=128, overlap=32, offset=(37, 53))
    a, b = read1(tmp_path/'a.tif'), read1(tmp_path/'b.tif')
    assert a.sum() > 50000
    assert (a != b).sum() <= 0.005*a.sum()

def test_streaming_equals_whole(tmp_path, mc):
    "The rolling-strip engine gives what a whole-raster accumulation over the same tiles gives."
    model, card = mc
    s = demo_scene(tmp_path/'s.tif', 300, roofs=((50, 50, 100, 80), (180, 150, 90, 120)), nodata_cols=20)
    T, O = 64, 16
    predict_raster(s, model, card, prob_path=tmp_path/'p.tif', tile_size=T, overlap=O, batch_size=3)
    with rasterio.open(s) as ds: arr = ds.read()
    H, W = arr.shape[1:]
    acc, ws, wgt = np.zeros((H, W)), np.zeros((H, W)), blend_weights(T, O)
    ok = (arr != 0).any(0)
    for y in tile_starts(H, T, T - O):
        for x in tile_starts(W, T, T - O):
            p = predict_tiles(model, arr[None, :, y:y+T, x:x+T], card, amp=inf.autocast_dtype(torch.device("cpu")))[0]*ok[y:y+T, x:x+T]
            acc[y:y+T, x:x+T] += p*wgt; ws[y:y+T, x:x+T] += wgt
    ref = np.round(acc/ws*255)
    got = read1(tmp_path/'p.tif').astype(float)
    assert np.abs(got - ref).max() <= 1
    st = predict_raster(s, model, card, prob_path=tmp_path/'p2.tif', tile_size=T, overlap=O, batch_size=5, panel=128)
    assert st['panels'] >= 2 and np.abs(read1(tmp_path/'p2.tif') - ref).max() <= 1  # column panels: the same blend
    # and polygons do not depend on the strip layout
    g1 = detect(s, model, card, edge=0, tile_size=64, overlap=16)
    g2 = detect(s, model, card, edge=0, tile_size=300, overlap=0)
    g3 = detect(s, model, card, edge=0, tile_size=64, overlap=16, panel=128)
    assert len(g1) == len(g2) == len(g3) == 2
    np.testing.assert_allclose(g1.area_m2, g3.area_m2, rtol=1e-6)
    np.testing.assert_allclose(g1.area_m2, g2.area_m2, rtol=0.02)

def test_vrt_input(tmp_path, mc):
    a = demo_scene(tmp_path/'a.tif', 256, roofs=((100, 100, 60, 60),))
    vrt = tmp_path/'a.vrt'
    subprocess.run(['gdalbuildvrt', str(vrt), str(a)], check=True, capture_output=True) if shutil.which('gdalbuildvrt') else \
        rasterio.shutil.copy(a, vrt, driver='VRT')
    assert len(detect(vrt, *mc, edge=0, tile_size=128)) == 1

# ---------------------------------------------------------------- batch: resume, no half files, Dask
@pytest.fixture(scope='module')
def chips(tmp_path_factory):
    d = tmp_path_factory.mktemp('chips')
    # 4 neighbouring 256 px chips in a row, 20 px of overlap; one roof straddles chips 1 and 2
    g0 = demo_scene(d/'tmp.tif', 256)
    with rasterio.open(g0) as s: tr0, crs = s.transform, s.crs
    g0.unlink()
    rng = np.random.default_rng(0)
    big = rng.normal(95, 18, (4, 256, 236*4 + 20)).clip(1, 255)
    for r, c, h, w in ((60, 60, 50, 60), (120, 200, 60, 100), (80, 520, 50, 50), (150, 760, 40, 60)):
        big[:3, r:r+h, c:c+w] = rng.normal(215, 8, (3, h, w)).clip(1, 255)
    from datacenter_detector.core import write_raster
    for i in range(4):
        c0 = i*236
        write_raster(d/f'chip{i}.tif', big[:, :, c0:c0+256].astype(np.uint8), tr0 @ rasterio.Affine.translation(c0, 0), crs, nodata=0)
    return d

def test_batch_dedup(tmp_path, chips, mc):
    g = batch_detect(chips, tmp_path/'all.geojson', model=mc[0], card=mc[1], tile_size=128, progress=False, merge_distance=5)  # default edge: 0
    assert len(g) == 4  # the straddling roof is seen by two chips once, and neighbours' overlaps de-duplicated
    straddle = g.loc[g.area_m2.idxmax()]
    assert ';' in straddle.source and abs(straddle.area_m2 - 60*100*0.36) < 0.1*60*100*0.36
    assert (tmp_path/'all_centroids.geojson').exists()

def test_batch_min_area_after_merge(tmp_path, chips, mc):
    "The card's facility rule applies to merged buildings: the straddling roof (2160 m², under 1500 m² in each chip) is kept, smaller roofs go."
    g = batch_detect(chips, tmp_path/'all.geojson', model=mc[0], card=dict(mc[1], detect=dict(min_area_m2=1500)), edge=0, tile_size=128,
                     progress=False, merge_distance=5)
    assert len(g) == 1 and abs(g.area_m2[0] - 60*100*0.36) < 0.1*60*100*0.36 and g.id.tolist() == [1]

def test_batch_min_score_after_merge(tmp_path, chips, mc):
    "The card's minimum mean probability applies to the merged buildings (their pixel-weighted mean score), and the CLI flag overrides it."
    kw = dict(model=mc[0], edge=0, tile_size=128, progress=False, merge_distance=5)
    g = batch_detect(chips, tmp_path/'a.geojson', card=mc[1], **kw)
    cut = float(np.sort(g.score_mean)[1]) - 1e-9   # keeps all but the least sure
    h = batch_detect(chips, tmp_path/'b.geojson', card=dict(mc[1], detect=dict(min_score=cut)), **kw)
    assert len(h) == len(g) - 1 and h.score_mean.min() >= cut and json.loads((tmp_path/'b.geojson').read_text())['provenance']['min_score'] == str(cut)

def test_batch_threshold_overrides_the_cards(tmp_path, chips, mc):
    "batch_detect's threshold: smaller roofs than at the card's, new parts (not the cached ones), provenance; the Dask block task uses it too; a non-probability is refused before any work."
    kw = dict(model=mc[0], card=mc[1], edge=0, tile_size=128, progress=False, merge_distance=5)
    a = batch_detect(chips, tmp_path/'all.geojson', **kw)
    b = batch_detect(chips, tmp_path/'all.geojson', threshold=0.95, **kw)   # same output and work folder: the parts must not be reused
    assert len(a) == len(b) == 4 and b.area_m2.sum() < a.area_m2.sum()
    assert json.loads((tmp_path/'all.geojson').read_text())['provenance']['threshold'] == '0.95'
    assert len(json.loads((tmp_path/'all.parts'/'manifest.json').read_text())['done']) == 8   # 4 inputs at each threshold
    spec = dict(model=mc[0], card=mc[1], kw=dict(tile_size=128, overlap=32, panel=256), threshold=0.95)
    hi = inf._block(str(chips/'chip1.tif'), 0, 1, spec)[0]
    lo = inf._block(str(chips/'chip1.tif'), 0, 1, dict(spec, threshold=None))[0]
    assert hi.n_pixels.sum() < lo.n_pixels.sum()
    with pytest.raises(ValueError, match=r"threshold 1.5 is not a probability"): batch_detect(chips, tmp_path/'x.geojson', threshold=1.5, **kw)
    assert not (tmp_path/'x.geojson').exists() and not (tmp_path/'x.parts').exists()

def test_batch_verifier_after_merge(tmp_path, chips, mc):
    "The building verifier (05d) scores each input's detections, the merge keeps the best score of a building's parts, and its minimum applies after the merge."
    from datacenter_detector.verify import constant_verifier
    card = dict(mc[1], detect=dict(verifier=str(constant_verifier(tmp_path/'v', 0.3)), min_verify=0.5))
    kw = dict(model=mc[0], edge=0, tile_size=128, progress=False, merge_distance=5)
    assert len(batch_detect(chips, tmp_path/'a.geojson', card=card, **kw)) == 0              # 0.3 < 0.5: every building rejected
    g = batch_detect(chips, tmp_path/'b.geojson', card=card, min_verify=0.2, **kw)           # the flag overrides the card
    assert len(g) == 4 and np.allclose(g.verify_p, 0.3, atol=1e-3)
    prov = json.loads((tmp_path/'b.geojson').read_text())['provenance']
    assert prov['min_verify'] == '0.2' and prov['verifier'] == card['detect']['verifier']

def test_batch_resume_after_crash(tmp_path, chips, mc, monkeypatch):
    kw = dict(model=mc[0], card=mc[1], edge=0, tile_size=128, progress=False)
    clean = batch_detect(chips, tmp_path/'clean/all.geojson', **kw)
    calls, real = [], inf.detect
    def flaky(*a, **k):
        if len(calls) == 2: raise KeyboardInterrupt('killed')  # the run dies while the third input runs
        calls.append(a[0]); return real(*a, **k)
    monkeypatch.setattr(inf, 'detect', flaky)
    out = tmp_path/'run/all.geojson'
    with pytest.raises(KeyboardInterrupt): batch_detect(chips, out, **kw)
    assert not out.exists()
    man = json.loads((tmp_path/'run/all.parts/manifest.json').read_text())
    assert len(man['done']) == 2
    # a half-written part: its bytes no longer match the manifest's hash, so it must be recomputed
    first = next(iter(man['done'].values()))
    part = tmp_path/'run/all.parts'/first['part']; part.write_text(part.read_text()[:50])
    (tmp_path/'run/all.parts/.junk.tmp.geojson').write_text('{')  # a leftover temp file is ignored
    monkeypatch.setattr(inf, 'detect', lambda *a, **k: (calls.append(a[0]), real(*a, **k))[1])
    calls.clear()
    g = batch_detect(chips, out, **kw)
    assert len(calls) == 3  # 2 never done + 1 whose part was damaged; the intact one is skipped
    assert g.drop(columns='geometry').equals(clean.drop(columns='geometry'))
    assert g.geometry.geom_equals_exact(clean.geometry, 1e-9).all()
    calls.clear(); batch_detect(chips, out, **kw); assert calls == []

def test_dask_equals_single_process(tmp_path, chips, mc):
    pytest.importorskip('distributed')
    kw = dict(model=mc[0], card=mc[1], edge=0, tile_size=128, progress=False, threads=1, merge_distance=5)
    one = batch_detect(chips, tmp_path/'one/all.geojson', **kw)
    two = batch_detect(chips, tmp_path/'two/all.geojson', workers=2, **kw)
    assert len(one) == 4
    pd.testing.assert_frame_equal(pd.DataFrame(one.drop(columns='geometry')), pd.DataFrame(two.drop(columns='geometry')))
    assert one.geometry.geom_equals_exact(two.geometry, 0).all()
    pa, pb = (sorted(json.loads((tmp_path/f'{k}/all.parts/manifest.json').read_text())['done'].values(), key=lambda e: e['input'])
              for k in ('one', 'two'))
    assert [e['sha256'] for e in pa] != [] and [e['n'] for e in pa] == [e['n'] for e in pb]

# ---------------------------------------------------------------- CLIs
@pytest.fixture(scope='module')
def ckpt(tmp_path_factory, scene):
    "A real UNet checkpoint (random init, seed 0) whose card threshold sits at the 97th percentile of its scene output."
    unet = pytest.importorskip('datacenter_detector.unet')
    torch.manual_seed(0)
    m = unet.UNet(in_ch=4, base=8, depth=2).eval()
    card = unet.make_card(m, dict(mean=[100.]*4, std=[40.]*4), name='unet-test')
    d = tmp_path_factory.mktemp('ckpt')
    p = predict_raster(scene, m, card, prob_path=d/'p.tif', tile_size=128)
    card['threshold'] = float(np.percentile(read1(d/'p.tif'), 97)/255)
    unet.save_model(m, card, d/'model')
    return d/'model'

def run(cmd, *args):
    return subprocess.run([str(BIN/cmd), *map(str, args)], capture_output=True, text=True, timeout=300)

def test_cli_detect(tmp_path, scene, ckpt):
    r = run('dcd_detect', '--checkpoint', ckpt, '--image', scene, '--output-geojson', tmp_path/'o.geojson',
            '--output-mask', tmp_path/'m.tif', '--min-area', 20, '--merge-distance', 15, '--tile-size', 128, '--overlap', 32,
            '--output-csv', tmp_path/'o.csv', '--output-prob', tmp_path/'p.tif', '--device', 'cpu', '--quiet')
    assert r.returncode == 0, r.stderr
    g = gpd.read_file(tmp_path/'o.geojson')
    model, card = load_detector(ckpt, device='cpu')
    ref = detect(scene, model, card, min_area=20, merge_distance=15, tile_size=128, overlap=32)
    assert len(g) == len(ref) > 0
    np.testing.assert_allclose(g.area_m2, ref.area_m2, rtol=1e-3)
    assert set(g.model) == {'unet-test'}
    for f in ('o_centroids.geojson', 'o.csv', 'm.tif', 'p.tif'): assert (tmp_path/f).exists()
    r = run('dcd_detect', '--checkpoint', ckpt, '--image', scene, '--output-geojson', tmp_path/'s.geojson', '--min-area', 20, '--merge-distance', 15,
            '--tile-size', 128, '--overlap', 32, '--device', 'cpu', '--quiet', '--min-score', 1.0)   # no detection is that sure
    assert r.returncode == 0 and '0 detection(s)' in r.stdout and len(gpd.read_file(tmp_path/'s.geojson')) == 0
    r = run('dcd_detect', '--checkpoint', ckpt, '--image', scene, '--output-geojson', tmp_path/'t.geojson', '--min-area', 20, '--merge-distance', 15,
            '--tile-size', 128, '--overlap', 32, '--device', 'cpu', '--quiet', '--threshold', 1.5)
    assert r.returncode == 1 and 'dcd_detect: error: threshold 1.5 is not a probability' in r.stderr and not (tmp_path/'t.geojson').exists()

def test_cli_detect_verifier(tmp_path, scene, ckpt):
    "A card whose rule names a verifier: dcd_detect scores every detection (verify_p in the CSV) and drops those under its minimum; a missing verifier is a clear error."
    from datacenter_detector.verify import constant_verifier
    m = tmp_path/'model'; shutil.copytree(ckpt, m)
    card = json.loads((m/'model.json').read_text())
    def with_rule(**r): (m/'model.json').write_text(json.dumps(dict(card, detect=dict(threshold=card['threshold'], **r))))
    args = ('--checkpoint', m, '--image', scene, '--min-area', 20, '--merge-distance', 15, '--tile-size', 128, '--device', 'cpu', '--quiet')
    with_rule(verifier=str(constant_verifier(tmp_path/'v', 0.3)), min_verify=0.5)
    r = run('dcd_detect', *args, '--output-geojson', tmp_path/'a.geojson')
    assert r.returncode == 0 and '0 detection(s)' in r.stdout, r.stderr
    r = run('dcd_detect', *args, '--output-geojson', tmp_path/'b.geojson', '--output-csv', tmp_path/'b.csv', '--min-verify', 0)
    df = pd.read_csv(tmp_path/'b.csv', comment='#')
    assert r.returncode == 0 and len(df) > 0 and np.allclose(df.verify_p, 0.3, atol=1e-3), r.stderr
    with_rule(verifier=str(tmp_path/'no_such_verifier'), min_verify=0.5)
    r = run('dcd_detect', *args, '--output-geojson', tmp_path/'c.geojson')
    assert r.returncode == 1 and 'No verifier at' in r.stderr and 'Traceback' not in r.stderr and not (tmp_path/'c.geojson').exists()

def test_cli_errors(tmp_path, scene):
    r = run('dcd_detect', '--checkpoint', tmp_path/'nope', '--image', scene, '--output-geojson', tmp_path/'o.geojson')
    assert r.returncode == 1 and 'dcd_detect: error: Checkpoint' in r.stderr and 'Traceback' not in r.stderr
    if not (inf.MODELS/'unet4'/'model.json').exists():
        r = run('dcd_detect', '--image', scene, '--output-geojson', tmp_path/'o.geojson')
        assert r.returncode == 1 and 'No shipped model' in r.stderr
    r = run('dcd_detect', '--image', tmp_path/'missing.tif', '--checkpoint', tmp_path, '--output-geojson', tmp_path/'o.geojson')
    assert r.returncode == 1
    assert not (tmp_path/'o.geojson').exists()

def test_cli_batch(tmp_path, chips, ckpt):
    r = run('dcd_batch_detect', '--checkpoint', ckpt, '--chips-dir', chips, '--output-geojson', tmp_path/'b.geojson',
            '--merge-distance', 50, '--tile-size', 128, '--quiet')
    assert r.returncode == 0, r.stderr
    r2 = run('dcd_batch_detect', '--checkpoint', ckpt, '--images', str(chips/'chip*.tif'), '--output-geojson', tmp_path/'c.geojson',
             '--merge-distance', 50, '--tile-size', 128, '--quiet')
    assert r2.returncode == 0, r2.stderr
    a, b = gpd.read_file(tmp_path/'b.geojson'), gpd.read_file(tmp_path/'c.geojson')
    assert len(a) == len(b) and json.loads((tmp_path/'b.geojson').read_text())['provenance']['inputs'] == '4'
    r = run('dcd_batch_detect', '--checkpoint', ckpt, '--chips-dir', chips, '--output-geojson', tmp_path/'t.geojson', '--threshold', 0.9, '--tile-size', 128, '--quiet')
    assert r.returncode == 0 and json.loads((tmp_path/'t.geojson').read_text())['provenance']['threshold'] == '0.9'
    r = run('dcd_batch_detect', '--checkpoint', ckpt, '--chips-dir', chips, '--output-geojson', tmp_path/'x.geojson', '--threshold', 1.5, '--quiet')
    assert r.returncode == 1 and 'dcd_batch_detect: error: threshold 1.5 is not a probability' in r.stderr and not (tmp_path/'x.geojson').exists()

def test_gpkg_parquet_provenance(tmp_path, scene, mc):
    import pyogrio, pyarrow.parquet as pq
    g = detect(scene, *mc, output_gpkg=tmp_path/'d.gpkg', output_parquet=tmp_path/'d.parquet', edge=5, tile_size=128)
    assert pyogrio.read_info(tmp_path/'d.gpkg')['layer_metadata']['model'] == 'bright-roof-demo'
    assert json.loads(pq.read_schema(tmp_path/'d.parquet').metadata[b'provenance'])['source'] == 'scene.tif'
    back = gpd.read_parquet(tmp_path/'d.parquet')
    assert back.crs.to_epsg() == 4326 and len(back) == len(g) == 3
    np.testing.assert_allclose(gpd.read_file(tmp_path/'d.gpkg').area_m2, g.area_m2)

def test_dask_existing_scheduler(tmp_path, chips, mc):
    distributed = pytest.importorskip('distributed')
    kw = dict(model=mc[0], card=mc[1], edge=0, tile_size=128, progress=False, threads=1, merge_distance=5)
    one = batch_detect(chips, tmp_path/'one/all.geojson', **kw)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host='127.0.0.1', dashboard_address=None) as cl:
        two = batch_detect(chips, tmp_path/'two/all.geojson', scheduler=cl.scheduler_address, **kw)
    pd.testing.assert_frame_equal(pd.DataFrame(one.drop(columns='geometry')), pd.DataFrame(two.drop(columns='geometry')))

def test_dask_blocks_of_a_huge_input(tmp_path, mc):
    "An input wider than `split` becomes column-block tasks plus a task that depends on them; the results equal one process."
    pytest.importorskip('distributed')
    d = tmp_path/'in'; d.mkdir()
    demo_scene(d/'wide.tif', 1024, roofs=((100, 440, 120, 200), (600, 60, 80, 80), (700, 900, 90, 70)))  # roof 1 spans the cut
    demo_scene(d/'small.tif', 256, roofs=((80, 80, 60, 60),), lon=-77.40)
    kw = dict(model=mc[0], card=mc[1], edge=0, tile_size=128, overlap=32, panel=256, progress=False, threads=1, merge_distance=5)
    assert inf.n_blocks(d/'wide.tif', split=512, panel=256) == 2 and inf.n_blocks(d/'small.tif', split=512, panel=256) == 1
    one = batch_detect(d, tmp_path/'one/all.geojson', **kw)
    two = batch_detect(d, tmp_path/'two/all.geojson', workers=2, split=512, **kw)
    assert len(one) == 4
    pd.testing.assert_frame_equal(pd.DataFrame(one.drop(columns='geometry')), pd.DataFrame(two.drop(columns='geometry')))
    assert one.geometry.geom_equals_exact(two.geometry, 0).all()
    man = {Path(e['input']).name: e for e in json.loads((tmp_path/'two/all.parts/manifest.json').read_text())['done'].values()}
    assert man['wide.tif']['blocks'] == 2 and man['small.tif']['blocks'] == 1   # the wide input ran as two block tasks
    # each block task returns the pieces of its own columns only
    pieces = [inf._block(str(d/'wide.tif'), i, 2, dict(model=mc[0], card=mc[1], kw=kw))[0] for i in range(2)]
    assert pieces[0].total_bounds[2] < 1024 and pieces[1].total_bounds[0] > 0

def test_compile_matches_eager_and_falls_back(tmp_path, scene, monkeypatch):
    "torch.compile (big rasters by default) gives the eager masks; if compiling fails, a warning and the eager model run instead."
    torch.manual_seed(0)
    from datacenter_detector.unet import UNet, make_card
    m = UNet(4, 8, 2).eval(); card = make_card(m, dict(mean=[100.]*4, std=[40.]*4), name='unet-test', threshold=0.5)
    kw = dict(tile_size=128, batch_size=3)   # 9 tiles: the last batch is padded to the compiled shape
    a = predict_raster(scene, m, card, prob_path=tmp_path/'a.tif', compile=False, **kw)
    b = predict_raster(scene, m, card, prob_path=tmp_path/'b.tif', compile=True, **kw)
    pa, pb = read1(tmp_path/'a.tif').astype(int), read1(tmp_path/'b.tif').astype(int)
    assert a['tiles_run'] == b['tiles_run'] == 9 and np.abs(pa - pb).max() <= 2   # bf16 rounding only
    f = inf.fast_model(m, (3, 4, 128, 128), 'cpu', torch.bfloat16)
    assert f[1] and inf.fast_model(m, (3, 4, 128, 128), 'cpu', torch.bfloat16)[0] is f[0]   # cached: compiled once per process
    with torch.no_grad(): next(m.parameters()).add_(1.)
    assert inf.fast_model(m, (3, 4, 128, 128), 'cpu', torch.bfloat16)[0] is not f[0]       # new weights: rebuilt, never stale
    def boom(*a, **k): raise RuntimeError('no compiler here')
    monkeypatch.setattr(torch, 'compile', boom)
    m2 = UNet(4, 8, 2).eval()
    with pytest.warns(UserWarning, match='torch.compile failed'):
        c = predict_raster(scene, m2, card, prob_path=tmp_path/'c.tif', compile=True, **kw)
    assert c['tiles_run'] == 9 and read1(tmp_path/'c.tif').max() > 0

# ---------------------------------------------------------------- merging never loses a part
def test_merge_parts_keeps_slivers_that_the_closing_erases():
    "Clipping at chip edges leaves sub-pixel slivers; two near each other once merged to an empty polygon and crashed the merge. Every part must stay covered."
    import shapely
    from datacenter_detector.inference import merge_parts
    x0, y0 = 500000, 4300000
    def part(g, src): return gpd.GeoDataFrame(dict(id=[1], lat=0., lon=0., area_m2=0.3, perimeter_m=1., area_px=1., score_mean=.9, score_max=.95,
                                                   verify_p=np.nan, source=src, model='m', model_version='1'), geometry=[g], crs=32618).to_crs(4326)
    slivers = [shapely.box(x0, y0, x0+0.6, y0+0.001), shapely.box(x0+3, y0, x0+3.6, y0+0.001)]   # 3 m apart: one facility at 10 m
    out = merge_parts([part(s, n) for s, n in zip(slivers, 'ab')], 10.)
    assert len(out) == 1 and not out.geometry.iloc[0].is_empty and out.source.iloc[0] == 'a;b'
    m = out.to_crs(32618).geometry.iloc[0]
    assert all(m.buffer(1e-6).covers(s) for s in slivers)
    big = [shapely.box(x0, y0, x0+50, y0+50), shapely.box(x0+55, y0, x0+105, y0+50)]   # two halls 5 m apart: the gap is bridged
    m = merge_parts([part(s, n) for s, n in zip(big, 'ab')], 10.).to_crs(32618).geometry.iloc[0]
    assert m.geom_type == 'Polygon' and abs(m.area - 105*50) < 5
