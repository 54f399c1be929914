"bench/bench_sites.py's diagnosis of the misses: each missed data center gets the first part of the rule that loses it."
import importlib.util
from pathlib import Path
import geopandas as gpd, shapely

spec = importlib.util.spec_from_file_location('bench_sites', Path(__file__).parents[1]/'bench'/'bench_sites.py')
bench_sites = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench_sites)

def utm_box(x, y, w, h=None): return shapely.box(x, y, x + w, y + (h or w))

def test_causes_name_the_part_of_the_rule_that_loses_each_data_center():
    X0, Y0 = 500_000, 4_300_000   # UTM 13N metres
    labs = gpd.GeoDataFrame(dict(fid=[1, 2, 3, 4], name=['a', 'b', 'c', 'w'], **{'class': ['datacenter']*3 + ['warehouse']}),
                            geometry=[utm_box(X0, Y0, 60), utm_box(X0 + 200, Y0, 30), utm_box(X0 + 400, Y0, 60), utm_box(X0 + 600, Y0, 60)], crs=32613).to_crs(4326)
    index = gpd.GeoDataFrame(dict(site_id=[0], path=['site0.tif']), geometry=[utm_box(X0 - 100, Y0 - 100, 900, 300)], crs=32613).to_crs(4326)
    det = gpd.GeoDataFrame(dict(area_m2=[3600., 900., 100., 3600.], score_mean=[.9]*4, verify_p=[.05, .9, .9, .9]),   # a: the verifier says no; b: too small;
                           geometry=[utm_box(X0, Y0, 60), utm_box(X0 + 200, Y0, 30), utm_box(X0 + 400, Y0, 10), utm_box(X0 + 600, Y0, 60)], crs=32613).to_crs(4326)  # c: a corner piece (35 m off)
    ev = dict(index=index, threshold=0.5, split='test', detections={0.5: det})
    rule = dict(threshold=0.5, min_area_m2=1000., min_score=0., min_verify=0.1)
    assert bench_sites.causes([ev], labs, rule, seeds=[7]) == {'a': {'verifier': 1}, 'b': {'min_area_m2 or min_score': 1}, 'c': {'no polygon matches': 1}}
    assert bench_sites.causes([ev], labs, dict(rule, min_area_m2=0., min_verify=0.), seeds=[7]) == {'c': {'no polygon matches': 1}}

def test_cached_probs_run_the_network_once(tmp_path):
    from datacenter_detector.inference import bright_roof_model, demo_scene
    from datacenter_detector.evaluation import scene_probs
    import numpy as np
    scene = demo_scene(tmp_path/'scene.tif', size=256)
    model, card = bright_roof_model()
    first = bench_sites.cached_probs(tmp_path/'probs', model, card)(scene)
    want = scene_probs(scene, model, card, progress=False)
    assert first.dtype == np.float32 and np.abs(first - want).max() < 1e-6 and want.max() > 0.5   # as scene_probs makes them (uint8 steps)
    assert sorted(p.name for p in (tmp_path/'probs').iterdir()) == ['scene.npy']                # no temporary file left
    again = bench_sites.cached_probs(tmp_path/'probs', None, card)(scene)   # no network: read from the cache
    assert np.array_equal(again, first)

def test_cache_key_names_what_the_evaluations_depend_on():
    "Cards that differ in the rule's threshold or the shrink get their own cached evaluations (each evaluation holds the detections at the card's thresholds)."
    card = dict(name='m', sha256='a'*64, threshold=0.62, detect=dict(threshold=0.62, min_area_m2=2000., verifier=None, shrink_m=5.37))
    keys = [bench_sites.cache_key(c) for c in (card, card | dict(detect=card['detect'] | dict(threshold=0.4)), card | dict(detect=card['detect'] | dict(shrink_m=0.)))]
    assert keys[0] == 'm-aaaaaaaaaaaa-t0.62-r0.62-noverifier-s5.37' and len(set(keys)) == 3
