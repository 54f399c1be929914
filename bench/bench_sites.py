"""Facility F1 of a model (default: the shipped unet4) on site scenes: each site of the val and test splits rendered once, as one image, and run through the tool's raster path.

`evaluate_chips` scores facilities on the union of the detections of overlapping chips, and the synthesizer renders
each chip on its own (its own weather, sun, roofs' wear and surroundings), so a data center counts as found when any
of several independent renders finds it, and two halls merge when any one render bridges them. Here each site is one
scene (`site_scenes`: its labels' bounding box + 150 m, as `dcd_download --source synthetic` renders it) and the
detections are the tool's own (`evaluate_scenes`: `predict_raster`, blended tiles, each detection verified on the same
image). The facility rule is chosen on the val scenes (`tune_facility_rule`, the candidates `dcd_tune_rule` uses) and
scored on the test scenes (`rule_scores`, which chooses nothing); the model card's rule (chosen on val chips) is scored
on both too. The same scenes are scored again with test-time augmentation (`dcd_detect --tta`: the 8 D4 transforms
averaged), rules chosen on the val scenes the same way, and the time it costs is measured on one scene side by side (`tta`).
With --calibrate-shrink the card's shrink back to the roof is first calibrated on the val scenes (`calibrate_shrink`:
the median matched roof-area error at the card's threshold made zero), and everything after uses it.
Scenes are cached in --work, the model's probabilities in --work/probs/<model>, evaluations in --work/evals/<cache_key>
(the model's name, weights, pixel threshold, verifier and shrink). SYNTHETIC scenes: these are not real-NAIP accuracy figures.

    .venv/bin/python bench/bench_sites.py [--renders 9] [--test-renders N] [--first-test S] [--work runs/bench/sites] [--model <model folder>] [--cap-area] [--no-tta] [--calibrate-shrink]

The shipped unet4's figure in sites.json (its card's rule is the one chosen here; 2026-11-30): --test-renders 45 --cap-area --no-tta.
The misses by cause (test_miss_causes) of the shipped pair on test renders 63-98, from the cache: --renders 9 --test-renders 36 --first-test 63 --cap-area --no-tta --shrink 7.5 --out bench/results/sites_verify4b_causes.json.
The calibrated shrink (shipped since 2026-12-01) against the masks' buffer on fresh test renders 99-134: --renders 9 --test-renders 36 --first-test 99 --cap-area --no-tta --calibrate-shrink
--out bench/results/sites_shrink_fresh99.json, and the same with --shrink 7.5 --out bench/results/sites_verify4b_fresh99.json.
"""
import argparse, json, pickle, time, warnings
import numpy as np
from pathlib import Path
from datacenter_detector.evaluation import site_scenes, evaluate_scenes, scene_probs, tune_facility_rule, rule_sweep, rule_scores, labels_within, facility_errors, _is_dc, area_candidates, calibrate_shrink, pair_table, assign, AREAS
from datacenter_detector.inference import load_detector, detect_rule, passes_rule, predict_raster, with_rule
from datacenter_detector.labels import load_labels
from datacenter_detector.core import LABELS, provenance
from datacenter_detector.verify import load_verifier

KEYS = ['threshold', 'min_area_m2', 'min_score', 'min_verify']

def cache_key(card):
    "What the cached evaluations of a model depend on: its name, weights (sha256), pixel and rule thresholds (both swept too), verifier (name and weights) and shrink."
    r = detect_rule(card); v = r['verifier']
    if v: vc = load_verifier(v, 'cpu')[1]; v = f"{vc['name']}-{vc['sha256'][:12]}"
    return f"{card['name']}-{card['sha256'][:12]}-t{card['threshold']}-r{r['threshold']:g}-{v or 'noverifier'}-s{r['shrink_m']:g}"

def cached_probs(folder, model, card, tta=False):
    "scene path -> the model's probabilities (as `scene_probs` makes them), kept in `folder`/<scene>.npy as uint8 so that another shrink or rule costs no second pass of the network."
    def probs(path):
        f = Path(folder)/f"{Path(path).stem}.npy"
        if not f.exists():
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_suffix('.tmp.npy')
            np.save(tmp, np.round(scene_probs(path, model, card, tta=tta, progress=False)*255).astype(np.uint8)); tmp.rename(f)
        return np.load(f).astype(np.float32)/255
    return probs

def evaluations(split, renders, work, model, card, tta=False, cache=None, tag=None, **kw):
    "`evaluate_scenes` of the model on the site scenes in `work` of each render (seeds 0..`renders`-1, or a range of seeds) of `split` (with the 8 D4 transforms averaged if `tta`; `kw` for evaluate_scenes), cached in `cache` (default `work`) as {split}{render}{tag}.pkl."
    out, tag, reader = [], ('_tta' if tta else '') if tag is None else tag, kw.pop('probs', None)
    Path(cache or work).mkdir(parents=True, exist_ok=True)
    for s in (range(renders) if isinstance(renders, int) else renders):
        f = Path(cache or work)/f"{split}{s}{tag}.pkl"
        if not f.exists():
            d = Path(work)/split/f'seed{s}'
            probs = reader or cached_probs(Path(work)/'probs'/f"{card['name']}-{card['sha256'][:12]}{'_tta' if tta else ''}"/split/f'seed{s}', model, card, tta)
            ev = evaluate_scenes(site_scenes(d, split, seed=s), d, model, card, split, probs=probs, **kw)
            pickle.dump(ev, open(f, 'wb'))
        out.append(pickle.load(open(f, 'rb')))
    return out

def at(evs, labs, rule):
    "Facility counts and F1 of one rule, pooled over the renders."
    r = rule_scores(evs, labs, rule)
    return {k: r[k] for k in ('tp', 'fp', 'fn', 'precision', 'recall', 'f1')}

def kept(ev, rule):
    "The detections of one evaluation that `rule` keeps."
    d = ev['detections'][rule['threshold']]
    return d[passes_rule(d, rule['min_area_m2'], rule['min_score'], rule['min_verify'])]

def area_errors(evs, labs, rule):
    "Roof-area error (%) of the data centers `rule` finds, pooled over the renders: median, mean and median absolute."
    e = np.concatenate([assign(pair_table(kept(ev, rule), labels_within(labs[_is_dc(labs)], ev['index'])), 'either', 0.5, 30.).area_err_pct.to_numpy(float) for ev in evs])
    return dict(n=len(e), median=float(np.median(e)), mean=float(e.mean()), median_abs=float(np.median(np.abs(e))))

def errors(evs, labs, rule, seeds=None):
    "Per render (`seeds`, default 0, 1...) under `rule`: its F1 and `facility_errors` (the data centers missed, the false detections and what they lie on)."
    dcs, rows = _is_dc(labs), []
    for s, ev in zip(seeds or range(len(evs)), evs):
        e = facility_errors(kept(ev, rule), labels_within(labs[dcs], ev['index']), labels_within(labs[~dcs], ev['index']))
        rows.append(dict(seed=s, f1=at([ev], labs, rule)['f1'], errors=e[['error', 'name', 'on', 'area_m2']].to_dict('records')))
    return rows

def causes(evs, labs, rule, seeds=None):
    "Why `rule` misses what it misses, per data-center name, counted over the renders: the verifier dropped the polygon that matched it, the minimum area (or mean probability) did, or no polygon at the rule's threshold matches it (too partial, merged with a neighbour, or none)."
    def missed(r): return {(e['seed'], x['name']) for e in errors(evs, labs, r, seeds) for x in e['errors'] if x['error'] == 'missed'}
    no_verifier, no_rule = missed(dict(rule, min_verify=0.)), missed(dict(rule, min_verify=0., min_area_m2=0., min_score=0.))
    out = {}
    for seed, name in sorted(missed(rule)):
        why = 'verifier' if (seed, name) not in no_verifier else 'min_area_m2 or min_score' if (seed, name) not in no_rule else 'no polygon matches'
        out.setdefault(name, {}).setdefault(why, 0); out[name][why] += 1
    return out

def ceiling(evs, labs, min_area_m2):
    "Per threshold: the data centers the U-Net's own polygons (>= `min_area_m2`) match, pooled over the renders, and the F1 a perfect verifier would leave (every other polygon dropped)."
    rows = rule_sweep(evs, labs, areas=[min_area_m2], scores=[0], verifies=[0])   # the matched count (tp) needs no verifier
    return [dict(threshold=r['threshold'], found=r['tp'], of=r['tp'] + r['fn'], recall=r['recall'], f1_with_a_perfect_verifier=2*r['tp']/(2*r['tp'] + r['fn'])) for r in rows]

def timing(work, model, card):
    "Seconds of `predict_raster` on the first test scene of render 0, plain and with the 8 D4 transforms averaged, side by side."
    d = Path(work)/'test'/'seed0'
    path = d/site_scenes(d, 'test', seed=0).path.iloc[0]
    def run(tta):
        t0 = time.time(); predict_raster(path, model, card, on_block=lambda *a, **k: None, tta=tta, progress=False); return time.time() - t0
    run(False)   # warm-up
    plain, tta = run(False), run(True)
    return dict(scene=str(path), plain_s=round(plain, 1), tta_s=round(tta, 1), ratio=round(tta/plain, 2))

def scores(evs, labs, card, areas=AREAS, test_seeds=None):
    "The rule chosen on the val scenes (its minimum area among `areas`) and the card's rule, each scored on val and test, the test errors at each (renders `test_seeds`), and the ceiling."
    rule = tune_facility_rule(evs['val'], labs, areas=areas)
    chosen, card_rule = {k: rule[k] for k in KEYS}, {k: detect_rule(card)[k] for k in KEYS}
    return dict(chosen_on_val_scenes=chosen | dict(val=at(evs['val'], labs, chosen), test=at(evs['test'], labs, chosen)),
                card_rule=card_rule | dict(val=at(evs['val'], labs, card_rule), test=at(evs['test'], labs, card_rule)),
                area_error_pct_at_card=dict(note="roof-area error of the matched data centers at the card's rule, (detected - labelled)/labelled", **{sp: area_errors(es, labs, card_rule) for sp, es in evs.items()}),
                test_errors_at_chosen=errors(evs['test'], labs, chosen, test_seeds), test_errors_at_card=errors(evs['test'], labs, card_rule, test_seeds),
                test_miss_causes=dict(chosen=causes(evs['test'], labs, chosen, test_seeds), card=causes(evs['test'], labs, card_rule, test_seeds)),
                ceiling=dict(note="the data centers the U-Net's polygons of the card's minimum area or more match at each threshold, before the verifier; "
                                  "F1 if a perfect verifier dropped every other polygon: what no facility rule or verifier can exceed",
                             min_area_m2=card_rule['min_area_m2'], **{sp: ceiling(es, labs, card_rule['min_area_m2']) for sp, es in evs.items()}))

def report(name, r):
    for k in ('chosen_on_val_scenes', 'card_rule'):
        q = r[k]; print(name, k, {c: q[c] for c in KEYS}, '| val', {c: round(q['val'][c], 3) for c in ('tp', 'fp', 'f1')}, '| test', {c: round(q['test'][c], 3) for c in ('tp', 'fp', 'f1')})
    for k, c in r['test_miss_causes'].items(): print(name, 'test misses at', k, c)
    print(name, 'area error % at card', {sp: {k: round(v, 1) for k, v in a.items()} for sp, a in r['area_error_pct_at_card'].items() if sp != 'note'})
    for sp in ('val', 'test'): print(name, 'ceiling', sp, {c['threshold']: (c['found'], round(c['f1_with_a_perfect_verifier'], 3)) for c in r['ceiling'][sp]})

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--renders', type=int, default=9)
    ap.add_argument('--test-renders', type=int, default=None, help='renders of the test sites (default: --renders)')
    ap.add_argument('--first-test', type=int, default=0, help='seed of the first test render: renders no earlier choice has seen start past those already scored')
    ap.add_argument('--work', default='runs/bench/sites', help='cached scenes and (in evals/) evaluations')
    ap.add_argument('--model', default=None, help='a model folder instead of the shipped unet4')
    ap.add_argument('--cap-area', action='store_true', help='choose the minimum area on the val scenes among area_candidates (at most half the smallest train data center)')
    ap.add_argument('--no-tta', action='store_true', help='skip the test-time-augmentation rows')
    ap.add_argument('--calibrate-shrink', action='store_true', help="calibrate the card's shrink on the val scenes first (calibrate_shrink) and use it for everything after")
    ap.add_argument('--shrink', type=float, default=None, help="metres: use this shrink instead of the card's (7.5: the masks' buffer, unet4's shrink until 2026-12-01)")
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'sites.json'))
    a = ap.parse_args()
    warnings.simplefilter('ignore')
    t0, labs = time.time(), load_labels(LABELS)
    model, card = load_detector(a.model, 'cpu')
    n = dict(val=a.renders, test=a.test_renders or a.renders)
    seeds = dict(val=range(n['val']), test=range(a.first_test, a.first_test + n['test']))
    if a.shrink is not None: card = with_rule(card, shrink_m=a.shrink)
    shrink = dict(shrink_m=detect_rule(card)['shrink_m'], note='given' if a.shrink is not None else "the card's")
    if a.calibrate_shrink:   # on the val scenes at the card's threshold, from outlines made with no shrink
        raw = with_rule(card, shrink_m=0)
        shrink = calibrate_shrink(evaluations('val', seeds['val'], a.work, model, raw, cache=Path(a.work)/'evals'/cache_key(raw), tag='_raw', sweep=(), verifier=False), labs, detect_rule(card)['threshold'])
        shrink['card_shrink_m'] = detect_rule(card)['shrink_m']; print('calibrated shrink', shrink)
        card = with_rule(card, shrink_m=shrink['shrink_m'])
    cache, areas = Path(a.work)/'evals'/cache_key(card), area_candidates(labs) if a.cap_area else AREAS
    evs = {sp: evaluations(sp, seeds[sp], a.work, model, card, cache=cache) for sp in n}
    res = dict(what=__doc__.splitlines()[0], model='shipped unet4' if a.model is None else str(a.model), sha256=card.get('sha256'), verifier=detect_rule(card)['verifier'], renders=n, test_seeds=[seeds['test'].start, seeds['test'].stop - 1],
               data=f"synthetic site scenes (hard), one per val/test site, seeds 0..{n['val'] - 1} of val, {a.first_test}..{a.first_test + n['test'] - 1} of test: SYNTHETIC, not real NAIP",
               n_facilities={sp: int(sum(len(labels_within(labs[_is_dc(labs)], e['index'])) for e in es)) for sp, es in evs.items()},
               shrink=shrink, area_candidates_m2=list(areas), **scores(evs, labs, card, areas, list(seeds['test'])))
    report('plain', res)
    if not a.no_tta:
        tta = {sp: evaluations(sp, seeds[sp], a.work, model, card, tta=True, cache=cache) for sp in n}
        res['tta'] = dict(note="the same scenes with test-time augmentation (dcd_detect --tta: the 8 D4 transforms averaged); rules chosen on the val scenes as above",
                          timing=timing(a.work, model, card), **scores(tta, labs, card, areas, list(seeds['test'])))
        report('tta', res['tta']); print('tta timing', res['tta']['timing'])
    chips = json.loads((Path(__file__).parent/'results'/'verifier.json').read_text())
    if chips.get('model_key') == cache_key(card):   # only the same model's chip figures
        res['chips_for_reference'] = dict(note="bench/results/verifier.json: the same model and verifier scored on the union of overlapping chips (evaluate_chips), rule chosen on val chips",
                                          chosen_on_val=chips['chosen_on_val'], test_at_chosen=chips['test_at_chosen'])
    res |= dict(seconds=round(time.time() - t0, 1), provenance=provenance(kind='site-scene benchmark'))
    Path(a.out).write_text(json.dumps(res, indent=1, default=float))
    print('->', a.out)

if __name__ == '__main__': main()
