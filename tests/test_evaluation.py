"Evaluation: metrics against hand-computed cases, one-to-one facility matching (property test), figures, the HTML report in headless Chromium, the dcd_evaluate CLI."
import io, json, math, os, shutil, subprocess, sys
from pathlib import Path
import numpy as np, pandas as pd, geopandas as gpd, shapely, pytest
from PIL import Image
from hypothesis import given, settings, strategies as st, HealthCheck
from datacenter_detector.evaluation import *
from datacenter_detector.evaluation import _demo_split, _demo_predict

X0, Y0 = 300000., 4320000.   # UTM 18N (Virginia)
def sq(x0, y0, w, h=None): return shapely.box(x0, y0, x0+w, y0+(h or w))
def utm_gdf(geoms, epsg=32618, **cols): return gpd.GeoDataFrame(cols, geometry=list(geoms), crs=epsg).to_crs(4326)
def png(fig): return np.asarray(Image.open(io.BytesIO(png_bytes(fig))).convert('RGB')).astype(int)

# ---------- pixel metrics, hand-computed ----------
T = np.zeros((20, 20), np.uint8); T[5:15, 5:15] = 1

def test_pixel_perfect():
    assert confusion(T, T) == dict(tp=100, fp=0, fn=0, tn=300)
    assert scores(**confusion(T, T)) == dict(dice=1., iou=1., precision=1., recall=1.)

def test_pixel_empty_prediction():
    s = scores(**confusion(np.zeros_like(T), T))
    assert (s['dice'], s['iou'], s['recall']) == (0., 0., 0.) and math.isnan(s['precision'])

def test_pixel_empty_truth():
    s = scores(**confusion(T, np.zeros_like(T)))
    assert (s['dice'], s['iou'], s['precision']) == (0., 0., 0.) and math.isnan(s['recall'])
    assert scores(**confusion(np.zeros_like(T), np.zeros_like(T)))['iou'] == 1.

def test_pixel_off_by_one():
    c = confusion(np.roll(T, 1, axis=0), T)
    assert c == dict(tp=90, fp=10, fn=10, tn=290)
    s = scores(**c)
    assert s['dice'] == pytest.approx(180/200) and s['iou'] == pytest.approx(90/110)
    assert s['precision'] == pytest.approx(0.9) and s['recall'] == pytest.approx(0.9)

def test_pixel_ignore_and_micro():
    ign = T.copy(); ign[5] = 255                                    # a row of ignored pixels
    assert confusion(T, ign) == dict(tp=90, fp=0, fn=0, tn=290)
    rows = pd.DataFrame([chip_row(T, T, site_id=0), chip_row(np.zeros_like(T), T, site_id=1)])
    m = micro(rows)
    assert (m['tp'], m['fn']) == (100, 100) and m['dice'] == pytest.approx(200/300)
    assert '| Dice Score | 66.7%  |' in metric_table(m)

def test_pr_curve_counts():
    prob = np.where(T == 1, .8, .1).astype(np.float32)
    c = pr_curve(prob_hist(prob, T))
    row = c[c.threshold == .5].iloc[0]
    assert (row.precision, row.recall) == (1., 1.)
    assert c.iloc[0].precision == pytest.approx(100/400) and c.iloc[0].recall == 1.

# ---------- facility metrics, hand-computed ----------
def test_facility_two_merged_into_one():
    halls = utm_gdf([sq(X0, Y0, 25, 60), sq(X0+35, Y0, 25, 60)])    # two 25x60 m halls, 10 m apart
    blob = utm_gdf([sq(X0, Y0, 60)])                                 # one prediction over both
    f = facility_metrics(blob, halls)
    assert (f['iou']['tp'], f['iou']['fp'], f['iou']['fn']) == (0, 1, 2)          # IoU 25/60 < 0.5
    assert (f['centroid']['tp'], f['centroid']['fn']) == (1, 1)                   # 17.5 m: only one of them
    assert f['centroid']['centroid_err_m_median'] == pytest.approx(17.5, abs=0.05)
    assert f['centroid']['area_err_pct_median'] == pytest.approx(140, abs=0.5)

def test_facility_one_split_in_two():
    f = facility_metrics(utm_gdf([sq(X0, Y0, 50, 100), sq(X0+50, Y0, 50, 100)]), utm_gdf([sq(X0, Y0, 100)]))
    for crit in ('iou', 'centroid', 'either'):
        assert (f[crit]['tp'], f[crit]['fp'], f[crit]['fn']) == (1, 1, 0)
        assert f[crit]['precision'] == .5 and f[crit]['recall'] == 1. and f[crit]['f1'] == pytest.approx(2/3)

def test_facility_empty_and_perfect():
    fac = utm_gdf([sq(X0, Y0, 80), sq(X0+500, Y0, 80)])
    e = facility_metrics(None, fac)['either']
    assert (e['tp'], e['fn'], e['recall'], e['f1']) == (0, 2, 0., 0.) and math.isnan(e['precision'])
    e = facility_metrics(fac, None)['either']
    assert (e['fp'], e['precision']) == (2, 0.) and math.isnan(e['recall'])
    p = facility_metrics(fac, fac)['iou']
    assert (p['precision'], p['recall'], p['f1']) == (1., 1., 1.) and p['area_err_pct_median'] == pytest.approx(0, abs=1e-6)

def test_facility_off_by_metres():
    "A prediction 20 m off an 80 m facility: IoU 60/100*... measured in metres even though inputs are EPSG:4326."
    f = facility_metrics(utm_gdf([sq(X0+20, Y0, 80)]), utm_gdf([sq(X0, Y0, 80)]), iou_min=0.5, centroid_m=15)
    assert f['iou']['tp'] == 1 and f['centroid']['tp'] == 0          # IoU 60/100 = 0.6; centroids 20 m > 15 m
    assert f['iou']['centroid_err_m_median'] == pytest.approx(20, abs=0.05)

# ---------- one-to-one matching: property test ----------
boxes = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 300), st.integers(5, 120), st.integers(5, 120)), max_size=9)

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(boxes, boxes, st.sampled_from(['iou', 'centroid', 'either']), st.floats(0.1, 0.9), st.floats(1, 80))
def test_matching_one_to_one(p, t, crit, iou_min, cm):
    pred, truth = utm_gdf([sq(X0+x, Y0+y, w, h) for x, y, w, h in p]), utm_gdf([sq(X0+x, Y0+y, w, h) for x, y, w, h in t])
    pairs = pair_table(pred, truth, cm)
    hung, greedy = assign(pairs, crit, iou_min, cm), assign(pairs, crit, iou_min, cm, 'greedy')
    for mt in (hung, greedy):
        assert mt.pred.is_unique and mt.truth.is_unique                    # one to one
        assert len(mt) <= min(len(p), len(t))
        if len(mt): assert ((mt.iou >= iou_min) if crit == 'iou' else (mt.dist_m <= cm) if crit == 'centroid' else ((mt.iou >= iou_min) | (mt.dist_m <= cm))).all()
    assert len(hung) >= len(greedy)                                       # Hungarian finds the most matches
    f = facility_metrics(pred, truth, iou_min, cm, pairs=pairs)[crit]
    assert f['tp'] == len(hung) and f['tp'] + f['fp'] == len(p) and f['tp'] + f['fn'] == len(t)

# ---------- hard negatives, bootstrap ----------
def test_hard_negatives():
    negs = utm_gdf([sq(X0, Y0, 100), sq(X0+200, Y0, 100), sq(X0+400, Y0, 100)], **{'class': ['warehouse', 'warehouse', 'other']})
    hn = hard_negative_rates(utm_gdf([sq(X0+50, Y0, 100), sq(X0+400, Y0, 5)]), negs, min_overlap=0.1).set_index('class')
    assert hn.loc['warehouse', 'flagged'] == 1 and hn.loc['warehouse', 'rate'] == .5
    assert hn.loc['other', 'flagged'] == 0 and math.isnan(hn.loc['retail', 'rate'])

def test_bootstrap_seeded_and_covers():
    rng = np.random.default_rng(1)
    df = pd.DataFrame(dict(site_id=np.arange(30), tp=rng.integers(50, 100, 30), fp=rng.integers(0, 40, 30), fn=rng.integers(0, 40, 30)))
    a, b, c = (bootstrap_ci(df, stat_of('dice'), n_boot=300, seed=s) for s in (7, 7, 8))
    assert a == b and a != c
    assert a['lo'] < a['value'] < a['hi'] and a['hi'] - a['lo'] < 0.2

# ---------- figures: real pixels ----------
def test_panels_render_colours():
    img = np.zeros((4, 32, 32), np.uint8); img[:3] = 80; img[:3, 8:24, 8:24] = 200
    truth = np.zeros((32, 32), np.uint8); truth[8:24, 8:24] = 1
    pred = np.zeros((32, 32), bool); pred[8:24, 12:28] = True
    px = png(plot_panels([dict(img=img, truth=truth, pred=pred, title='x')]))
    assert px.shape == (260, 1000, 3)
    right = px[:, 760:]                                                   # the overlay panel
    r, g, b = right[..., 0], right[..., 1], right[..., 2]
    green, red, blue = g - np.maximum(r, b) > 80, r - np.maximum(g, b) > 80, b - r > 80
    assert green.sum() > 500 and red.sum() > 100 and blue.sum() > 100     # TP, FP, FN all drawn

def test_pr_and_hist_render():
    prob = np.where(T == 1, .8, .1).astype(np.float32); prob[0, :5] = .9
    px = png(plot_pr({'pixel': pr_curve(prob_hist(prob, T))}, .5))
    assert ((px[..., 0] > 200) & (px[..., 1] < 80) & (px[..., 2] < 80)).sum() > 20   # the red threshold marker
    px = png(plot_chip_hist(pd.DataFrame([chip_row(T, T), chip_row(np.roll(T, 3, 0), T)])))
    assert ((px[..., 2] > 150) & (px[..., 0] < 80)).sum() > 200                       # blue bars

# ---------- end to end: report + Chromium screenshot ----------
@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp('ev')
    labels = _demo_split(root)
    ev = evaluate_chips(_demo_predict, root/'chips', root/'masks', 'test', 0.5)
    met = summarize(ev, labels, n_boot=50, data='hand-made demo chips (not imagery)')
    rep = write_report(ev, met, labels, root/'report', comparison=comparison_table({'unet4': met}))
    return root, ev, met, rep

def test_report_files(demo):
    root, ev, met, rep = demo
    js = json.loads(rep['metrics'].read_text())                           # valid JSON, NaN written as null
    assert js['n_chips'] == 4 and js['facility']['iou']['tp'] == 2 and js['data'].startswith('hand-made')
    assert js['pixel']['micro']['fn'] == 2*3*32 and js['hard_negatives'][0]['class'] == 'warehouse'
    assert js['pixel']['empty_chips']['chips'] == 2 and js['pixel']['empty_chips']['with_fp'] == 2   # the warehouse roofs
    assert js['fp_density_synthetic_background']['detections'] == 2
    assert gpd.read_file(rep['detections']).crs.to_epsg() == 4326
    assert not list((root/'report').glob('.*tmp*'))                       # no temp files left
    doc = rep['html'].read_text()
    assert doc.count('data:image/png;base64,') == 6 and '<script' not in doc and 'src="http' not in doc and "src='http" not in doc

from chromium import CHROME, screenshot, count_colour
@pytest.mark.skipif(not Path(CHROME).exists(), reason='headless Chromium not installed')
def test_report_renders_in_chromium(demo, tmp_path):
    root, ev, met, rep = demo
    px = screenshot(rep['html'].as_uri(), tmp_path/'shot.png')
    assert px.shape == (3000, 1200, 3)
    warn = count_colour(px, (0xff, 0xf4, 0xd6))                           # the 'measured on' box
    head = count_colour(px, (0xe8, 0xee, 0xf7))                           # table headers
    green = ((px[..., 1] > 180) & (px[..., 0] < 150) & (px[..., 2] < 150)).sum()   # TP overlay in the embedded panels
    assert warn > 5000 and head > 2000 and green > 2000, (warn, head, green)

def test_comparison_says_not_run(demo):
    ct = comparison_table({'unet4': demo[2]})
    assert ct.status.tolist() == ['measured', 'not run', 'not run', 'not run', 'not run', 'needs weights']
    assert ct.dice.iloc[1:].isna().all() and ct.dice.iloc[0] == pytest.approx(demo[2]['pixel']['micro']['dice'])

# ---------- the CLI ----------
BIN = Path(sys.executable).parent/'dcd_evaluate'

@pytest.fixture(scope='module')
def tiny_model(tmp_path_factory):
    torch = pytest.importorskip('torch'); unet = pytest.importorskip('datacenter_detector.unet')
    torch.manual_seed(0)
    m = unet.UNet(4, base=8, depth=2)
    d = tmp_path_factory.mktemp('model')
    unet.save_model(m, unet.make_card(m, dict(mean=[100.]*4, std=[50.]*4), name='unet4', threshold=0.5), d)
    return d

def test_cli_end_to_end(tmp_path, tiny_model):
    _demo_split(tmp_path)
    out = tmp_path/'reports'
    r = subprocess.run([str(BIN), '--checkpoint', str(tiny_model), '--chips-dir', str(tmp_path/'chips'), '--masks-dir', str(tmp_path/'masks'),
                        '--labels', str(tmp_path/'labels.geojson'), '--output-dir', str(out), '--n-boot', '20', '--data', 'demo chips', '--real', 'napa'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '| Dice Score |' in r.stdout and 'measured on: demo chips' in r.stdout
    js = json.loads((out/'metrics.json').read_text())
    assert js['n_chips'] == 4 and js['model']['name'] == 'unet4' and js['data'] == 'demo chips'
    assert 0 <= js['pixel']['micro']['dice'] <= 1 and (out/'report.html').stat().st_size > 20_000
    assert len(list(out.glob('*.png'))) == 6
    napa, = js['fp_density_real']                                          # the real scene, measured with the 4-band model
    assert napa['name'] == 'napa' and napa['model'] == 'unet4' and napa['data'].startswith('real:') and napa['area_km2'] > 0.02
    assert 'Real imagery with no data center' in (out/'report.html').read_text()

def test_cli_bad_chips_dir(tmp_path, tiny_model):
    r = subprocess.run([str(BIN), '--checkpoint', str(tiny_model), '--chips-dir', str(tmp_path/'nope'), '--masks-dir', str(tmp_path),
                        '--output-dir', str(tmp_path/'rep')], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'dcd_evaluate: error:' in r.stderr and 'index.geojson' in r.stderr and 'dcd_chips' in r.stderr
    assert 'Traceback' not in r.stderr
    assert not (tmp_path/'rep'/'metrics.json').exists()

def test_map_and_gallery_render():
    labs = pd.concat([utm_gdf([sq(X0, Y0, 80)], label=[True], site_id=[0]), utm_gdf([sq(X0+200, Y0, 80)], label=[False], site_id=[0]),
                      utm_gdf([sq(X0+90000, Y0, 80)], label=[True], site_id=[1])])
    px = png(plot_map(utm_gdf([sq(X0+10, Y0+10, 80), sq(X0+90000, Y0, 60)], site_id=[0, 1]), labs))
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    assert ((r > 200) & (g < 60) & (b < 60)).sum() > 100                  # red prediction outlines
    assert ((g - np.maximum(r, b)) > 40).sum() > 500                      # green labelled data centers
    assert ((r > 230) & (g > 160) & (g < 220) & (b < 160) & (r - b > 90)).sum() > 200   # orange hard negative (alpha 0.5 on white)
    assert px.shape[1] > 800                                              # two site panels side by side
    img = np.zeros((3, 32, 32), np.uint8); img[:] = 120
    t = np.zeros((32, 32), np.uint8); t[4:20, 4:20] = 1
    px = png(plot_gallery([dict(img=img, truth=t, pred=np.zeros_like(t, bool), title='miss')], 'worst misses'))
    assert ((px[..., 2] - px[..., 0]) > 80).sum() > 300                   # the missed facility drawn blue

def test_notebook_parameters_parse():
    "papermill (and the pipeline) must see every parameter of the notebook's parameters cell."
    pm = pytest.importorskip('papermill')
    nb = Path(__file__).parents[1]/'nbs'/'07_evaluation.ipynb'
    ps = pm.inspect_notebook(str(nb))
    assert {'split', 'checkpoint', 'checkpoint_rgb', 'compare', 'chips_dir', 'masks_dir', 'labels', 'data', 'real', 'out_dir', 'n_boot', 'seed'} <= set(ps)
    assert ps['real']['default'] == "'napa'" and ps['chips_dir']['default'] == "''"

def test_labels_within_accepts_labels_that_already_have_site_ids():
    "Labels from 02_label carry their own site_id (the pipeline passes them): the chips' site ids must win, not crash."
    import geopandas as gpd, shapely
    from datacenter_detector.evaluation import labels_within
    labels = gpd.GeoDataFrame(dict(fid=[1, 2], site_id=[7, 8]), geometry=[shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6)], crs=4326)
    chips = gpd.GeoDataFrame(dict(site_id=[3]), geometry=[shapely.box(0.5, 0.5, 2, 2)], crs=4326)
    out = labels_within(labels, chips)
    assert list(out.fid) == [1] and list(out.site_id) == [3]
    assert abs(out.geometry.iloc[0].area - 0.25) < 1e-9

def test_notebook_compares_model_folders(tmp_path, tiny_model):
    "07 run headless (papermill) with `compare`: the smp peer's folder goes through the same evaluation into the table (bad `compare` entries: 07's `parse_compare`)."
    pm = pytest.importorskip('papermill'); pytest.importorskip('segmentation_models_pytorch')
    import torch
    from datacenter_detector.unet import SmpUNet, make_card, save_model
    _demo_split(tmp_path)
    torch.manual_seed(0); peer = SmpUNet(4, 'resnet18')
    save_model(peer, make_card(peer, dict(mean=[100.]*4, std=[50.]*4), name='smp_test', threshold=0.5), tmp_path/'peer')
    nb = Path(__file__).parents[1]/'nbs'/'07_evaluation.ipynb'
    p = dict(checkpoint=str(tiny_model), checkpoint_rgb='', chips_dir=str(tmp_path/'chips'), masks_dir=str(tmp_path/'masks'),
             labels=str(tmp_path/'labels.geojson'), data='demo chips', real='', n_boot=20, out_dir=str(tmp_path/'rep'),
             compare=f'smp={tmp_path/"peer"}')
    pm.execute_notebook(str(nb), str(tmp_path/'run.ipynb'), parameters=p, kernel_name='python3', progress_bar=False)
    rows = {r['model']: r for r in json.loads((tmp_path/'rep'/'comparison.json').read_text())['rows']}
    smp = rows['smp U-Net (peer)']
    assert smp['status'] == 'measured' and 'demo chips' in smp['measured_on'] and 0 <= smp['iou'] <= 1
    assert json.loads((tmp_path/'rep'/'smp'/'metrics.json').read_text())['model']['name'] == 'smp_test'
    assert rows['U-Net 4-band (RGBN)']['status'] == 'measured' and rows['U-Net RGB']['status'] == 'measured'   # the shipped RGB model

def test_tta_is_d4_equivariant_and_the_card_rule_applies(tmp_path, tiny_model):
    "TTA averages the 8 D4 transforms, so its output turns with its input; the card's facility rule is measure_model's default."
    import shutil
    from datacenter_detector.evaluation import model_predictor, measure_model, set_detect_rule
    p, _ = model_predictor(tiny_model, 'cpu'); pt, _ = model_predictor(tiny_model, 'cpu', tta=True)
    x = np.random.default_rng(0).integers(0, 255, (4, 64, 64)).astype(np.uint8)
    assert np.abs(p(x) - pt(x)).max() > 1e-3                                      # TTA changes the output of an asymmetric model
    np.testing.assert_allclose(pt(np.rot90(x, 1, (1, 2)).copy()), np.rot90(pt(x), 1), atol=2e-3)
    np.testing.assert_allclose(pt(x[:, :, ::-1].copy()), pt(x)[:, ::-1], atol=2e-3)
    labels = _demo_split(tmp_path)
    m = tmp_path/'m'; shutil.copytree(tiny_model, m)
    args = (m, tmp_path/'chips', tmp_path/'masks', labels, 'test', 0.0)      # threshold 0: every valid pixel is a detection
    met0 = measure_model(*args, n_boot=10)[1]
    assert met0['facility']['n_pred'] > 0 and met0['facility']['min_area_m2'] == 0 and met0['model']['tta'] is False
    set_detect_rule(m, dict(min_area_m2=1e9, split='val', f1=0.0))
    met = measure_model(*args, n_boot=10, tta=True)[1]
    assert met['facility']['n_pred'] == 0 and met['facility']['min_area_m2'] == 1e9 and met['model']['tta'] is True
    assert measure_model(*args, n_boot=10, min_area_m2=0)[1]['facility']['n_pred'] == met0['facility']['n_pred']   # an explicit value wins

def test_evaluation_scores_what_batch_detect_returns(tmp_path):
    "One detection path: evaluate_chips' detections are those dcd_batch_detect makes from the same chips, a roof cut by chip edges included."
    from affine import Affine
    from datacenter_detector.core import Grid, write_raster, provenance, BAND_NAMES
    from datacenter_detector.inference import bright_roof_model, batch_detect
    model, card = bright_roof_model()
    rng = np.random.default_rng(0)
    img = rng.normal(90, 10, (4, 256, 256)).clip(0, 255).astype(np.uint8)
    img[:3, 100:160, 90:200] = 230      # a roof across all four chips
    img[:3, 20:50, 20:60] = 230         # and one inside a chip
    g0, idx = Grid.around(-77.44, 39.0, 256), []
    for i in range(2):
        for j in range(2):
            g, cid = Grid(g0.crs, g0.transform @ Affine.translation(j*128, i*128), 128, 128), f'c{i}{j}'
            write_raster(tmp_path/'chips'/f'{cid}.tif', img[:, i*128:(i+1)*128, j*128:(j+1)*128], g.transform, g.crs, 0, provenance(kind='test'), BAND_NAMES)
            write_raster(tmp_path/'masks'/f'{cid}.tif', np.zeros((128, 128), np.uint8), g.transform, g.crs, 255, provenance(kind='test'), resampling='nearest')
            idx.append(dict(chip_id=cid, path=f'{cid}.tif', split='test', kind='positive', site_id=7, geometry=shapely.box(*g.bounds)))
    gpd.GeoDataFrame(idx, crs=g0.crs).to_crs(4326).to_file(tmp_path/'chips'/'index.geojson')
    ev = evaluate_chips(predictor(model, card), tmp_path/'chips', tmp_path/'masks', 'test', 0.5, sweep=(), card=card)
    e = ev['detections'][0.5].sort_values('area_m2').reset_index(drop=True)
    b = batch_detect(tmp_path/'chips', tmp_path/'b.geojson', model=model, card=card, edge=0, merge_distance=10., min_area_m2=0.,
                     tile_size=128, overlap=0, progress=False).sort_values('area_m2').reset_index(drop=True)
    assert len(e) == len(b) == 2 and (e.site_id == 7).all()
    np.testing.assert_allclose(e.area_m2, b.area_m2, rtol=0.02)
    assert e.area_m2[1] == pytest.approx(60*110*0.36, rel=0.1)     # the cut roof is one detection again
    assert e.geometry.intersects(b.geometry).all()

def test_tune_rule_cli_on_val_renders(tmp_path, tiny_model):
    "dcd_tune_rule renders the val sites (cached), as chips, one scene per site or both, evaluates the model, and writes the best rule (and with --pixel the pixel threshold) into the card; bad input says what to do (pooling renders: 07's demo)."
    m = tmp_path/'m'; shutil.copytree(tiny_model, m)
    tune = Path(sys.executable).parent/'dcd_tune_rule'
    r = subprocess.run([str(tune), str(m), '--out-dir', str(tmp_path/'val'), '--renders', '1', '--device', 'cpu'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rule = json.loads((m/'model.json').read_text())['detect']
    assert rule['n_renders'] == 1 and 'val sites' in rule['chosen_on'] and rule['n_facilities'] == 13   # the val sites' 13 data centers
    assert all(rule[k] in rule['candidates'][k] for k in ('threshold', 'min_area_m2', 'min_score')) and len(rule['candidates']['min_score']) > 1
    assert f"val facility F1 {rule['f1']:.3f}" in r.stdout and 'not real NAIP' in r.stdout
    stamps = sorted((tmp_path/'val').glob('seed*/benchmark.json'))
    assert [json.loads(p.read_text())['params']['seed'] for p in stamps] == [0] and all(json.loads(p.read_text())['params']['split'] == 'val' for p in stamps)
    # on the val chips and one scene per val site pooled, minimum areas capped, the pixel threshold set first on the same render's chips (reused)
    card = json.loads((m/'model.json').read_text()); (m/'model.json').write_text(json.dumps(dict(card, threshold=0.123)))   # not a bin edge: --pixel must replace it
    r = subprocess.run([str(tune), str(m), '--out-dir', str(tmp_path/'val'), '--renders', '1', '--device', 'cpu', '--on', 'both', '--cap-area', '--pixel'], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((m/'model.json').read_text()); rule = card['detect']
    met = card['metrics']
    assert card['threshold'] == round(met['val']['threshold'], 4) == round(met['test']['threshold'], 4) != 0.123 and 'val and test sites' in met['note']
    assert 0 <= met['val']['f1'] <= 1 and met['test']['n_pos'] > 0 and met['test']['n_pos'] != met['val']['n_pos']   # the test renders are measured, not chosen on
    assert f"pixel threshold {card['threshold']}" in r.stdout
    assert 'the chips and one scene per site' in rule['chosen_on'] and 'half the smallest train data center' in rule['chosen_on']
    assert rule['n_facilities'] == 26 and rule['n_renders'] == 2   # the render's chips and its scenes, pooled
    from datacenter_detector.evaluation import area_candidates
    assert rule['candidates']['min_area_m2'] == area_candidates() and max(area_candidates()) < 3000 and rule['min_area_m2'] in area_candidates()
    assert json.loads((tmp_path/'val'/'val'/'seed0'/'scenes.json').read_text())['params']['split'] == 'val'
    assert [p.parent.name for p in (tmp_path/'val').glob('seed*/benchmark.json')] == ['seed0']   # no second val chip render
    assert json.loads((tmp_path/'val'/'test'/'seed0'/'benchmark.json').read_text())['params']['split'] == 'test'
    for bad, msg in (([str(tmp_path/'nope')], 'no model.json'), ([str(m), '--renders', '0'], 'at least 1'), ([str(m), '--on', 'tiles'], "'chips', 'scenes' or 'both'")):
        r = subprocess.run([str(tune), *bad, '--out-dir', str(tmp_path/'val')], capture_output=True, text=True, timeout=300)
        assert r.returncode != 0 and 'dcd_tune_rule: error:' in r.stderr and msg in r.stderr and 'Traceback' not in r.stderr
