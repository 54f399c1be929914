"bench/bench_pooled.py on the benchmark JSONs the repository holds: its pooled counts are the sums of each run's own pooled counts, and it refuses mixed models and renders counted twice."
import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
RES, SCRIPT = ROOT/'bench'/'results', ROOT/'bench'/'bench_pooled.py'
CHIPS, SCENES = ['accuracy.json', 'accuracy_fresh.json', 'accuracy_fresh18.json'], ['sites.json', 'sites_fresh45.json']

def run(tmp_path, chips=CHIPS, scenes=SCENES, rule='chosen'):
    out = tmp_path/'pooled.json'; out.unlink(missing_ok=True)   # a refused run must leave none
    r = subprocess.run([sys.executable, SCRIPT, '--chips', *chips, '--scenes', *scenes, '--scene-rule', rule, '--boot', '200', '--out', out], capture_output=True, text=True, cwd=ROOT)
    return r, (json.loads(out.read_text()) if out.exists() else None)

def test_pooled_counts_are_the_runs_sums(tmp_path):
    r, res = run(tmp_path)
    assert r.returncode == 0, r.stderr
    runs = [next(p for p in json.loads((RES/f).read_text())['pooled'] if p['split'] == 'test' and not p['tta']) for f in CHIPS]
    c = res['chips']
    assert c['renders'] == 27 and c['seeds'] == list(range(27))
    assert [c[k] for k in ('tp', 'fp', 'fn')] == [sum(p['pixel'][k] for p in runs) for k in ('tp', 'fp', 'fn')]
    assert [c[k] for k in ('n_true', 'found', 'false')] == [sum(p['facility'][k] for p in runs) for k in ('n_true', 'found', 'false')]
    lo, hi = c['facility_f1']['interval_90']
    assert lo <= c['facility_f1']['value'] <= hi and hi - lo > 0.01   # renders differ: the interval is not a point
    sites = [json.loads((RES/f).read_text()) for f in SCENES]
    s = res['scenes']
    assert s['renders'] == sum(len(j['test_errors_at_chosen']) for j in sites)
    assert s['found'] == sum(j['chosen_on_val_scenes']['test']['tp'] for j in sites)
    assert s['false'] == sum(j['chosen_on_val_scenes']['test']['fp'] for j in sites)

def test_refuses_repeats_and_mixed_models(tmp_path):
    r, res = run(tmp_path, chips=CHIPS + ['accuracy_fresh18.json'])
    assert r.returncode != 0 and res is None and 'renders counted twice' in r.stderr and '18' in r.stderr
    r, res = run(tmp_path, chips=CHIPS + ['accuracy_stage7_fresh.json'])
    assert r.returncode != 0 and res is None and 'different cards' in r.stderr

def test_refuses_the_wrong_kind_of_file(tmp_path):
    r, res = run(tmp_path, chips=['sites.json'])
    assert r.returncode != 0 and res is None and 'sites.json: not a bench_accuracy.py result' in r.stderr
    r, res = run(tmp_path, scenes=['accuracy.json'])
    assert r.returncode != 0 and res is None and 'accuracy.json: not a bench_sites.py result' in r.stderr

def test_refuses_chips_and_scenes_of_different_weights(tmp_path):
    acc, sites = (json.loads((RES/f).read_text()) for f in ('accuracy_fresh18.json', 'sites_fresh45.json'))
    for r in acc['per_render']: r['card']['sha256'] = 'a'*64
    (tmp_path/'acc.json').write_text(json.dumps(acc)); (tmp_path/'sites.json').write_text(json.dumps(sites | dict(sha256='a'*64)))
    r, res = run(tmp_path, chips=[str(tmp_path/'acc.json')], scenes=[str(tmp_path/'sites.json')])
    assert r.returncode == 0, r.stderr                                     # the same weights pool
    (tmp_path/'sites.json').write_text(json.dumps(sites | dict(sha256='b'*64)))
    r, res = run(tmp_path, chips=[str(tmp_path/'acc.json')], scenes=[str(tmp_path/'sites.json')])
    assert r.returncode != 0 and res is None and 'different model weights (aaaaaaaaaaaa, bbbbbbbbbbbb)' in r.stderr

def test_scenes_at_the_cards_rule(tmp_path):
    "`--scene-rule card` pools the errors at the card's rule (what a user runs), and refuses files that did not record them."
    chips, scenes = ['accuracy_verify4b_fresh27.json'], ['sites_verify4b_fresh63.json']
    r, res = run(tmp_path, chips=chips, scenes=scenes, rule='card')
    assert r.returncode == 0, r.stderr
    j = json.loads((RES/scenes[0]).read_text())
    assert res['scenes_at'] == 'card' and res['scene_rule']['threshold'] == j['card_rule']['threshold'] != j['chosen_on_val_scenes']['threshold']
    assert (res['scenes']['found'], res['scenes']['false']) == (j['card_rule']['test']['tp'], j['card_rule']['test']['fp'])
    r, res = run(tmp_path, chips=chips, scenes=scenes)   # the rule chosen on the val scenes
    assert (res['scenes']['found'], res['scenes']['false']) == (j['chosen_on_val_scenes']['test']['tp'], j['chosen_on_val_scenes']['test']['fp'])
    r, res = run(tmp_path, chips=chips, scenes=['sites_fresh45.json'], rule='card')
    assert r.returncode != 0 and res is None and 'sites_fresh45.json: not a bench_sites.py result (no test_errors_at_card)' in r.stderr
