"""What the building verifier (05d) does to the shipped U-Net's facility figures: the rule chosen on val with it, and every minimum side by side.

The shipped unet4 is evaluated (`evaluate_chips`, plain inference) on `--renders` renders of the synthetic benchmark's val
and test sites; every detection gets the verifier's probability (`verify_sites`: crops of the site's chip mosaic).
`tune_facility_rule` then chooses threshold, minimum area, minimum mean probability and minimum verifier probability on
the val renders, pooled (a minimum of 0 leaves the verifier out). `rule_sweep` scores the test renders with the same
candidates (it chooses nothing); the report gives the chosen rule's test figures and, for the record only, the card's
rule at every verifier minimum. The evaluations are cached
in --work/<cache_key> (one pickle per split and render, probabilities dropped; the key names the model's weights and threshold), so a rerun with another verifier costs minutes.
SYNTHETIC scenes: these are not real-NAIP accuracy figures.

    .venv/bin/python bench/bench_verifier.py [--verifier verify4b] [--renders 9] [--work runs/bench/verifier]
"""
import argparse, json, pickle, time, warnings
from pathlib import Path
import pandas as pd
from datacenter_detector.evaluation import evaluate_chips, model_predictor, synthetic_benchmark, tune_facility_rule, rule_sweep, verify_sites
from datacenter_detector.inference import detect_rule
from datacenter_detector.labels import load_labels
from datacenter_detector.core import LABELS, provenance
from bench_sites import cache_key

def evaluations(split, renders, work, bench, predict, card):
    "`evaluate_chips` of the model on each render of `split`, cached in `work` (without probabilities)."
    out = []
    for s in range(renders):
        f = Path(work)/f'{split}{s}.pkl'
        if not f.exists():
            c, m = synthetic_benchmark(Path(bench)/split/f'seed{s}', split, seed=s)
            ev = evaluate_chips(predict, c, m, split, card['threshold'], card=card, verifier=False)   # verified below, by --verifier
            ev.pop('probs'); f.parent.mkdir(parents=True, exist_ok=True); pickle.dump(ev, open(f, 'wb'))
        out.append(pickle.load(open(f, 'rb')))
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--verifier', default='verify4b', help='a verifier folder or shipped name')
    ap.add_argument('--renders', type=int, default=9)
    ap.add_argument('--work', default='runs/bench/verifier', help='cached evaluations, in a folder per model (bench_sites.cache_key)')
    ap.add_argument('--bench', default='runs/bench/accuracy', help="the benchmark renders (bench_accuracy.py's, shared)")
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'verifier.json'))
    a = ap.parse_args()
    warnings.simplefilter('ignore')
    t0, labs = time.time(), load_labels(LABELS)
    predict, card = model_predictor(None, 'cpu')
    evs = {sp: evaluations(sp, a.renders, Path(a.work)/cache_key(card), a.bench, predict, card) for sp in ('val', 'test')}
    for sp, es in evs.items():
        for e in es: verify_sites(e['detections'], e['index'], e['chips_dir'], a.verifier)
    rule = tune_facility_rule(evs['val'], labs)      # the candidates dcd_tune_rule uses
    vs = sorted(set(pd.DataFrame(rule['sweep']).min_verify))
    test = pd.DataFrame(rule_sweep(evs['test'], labs))   # the same candidates, scored on test, never chosen on
    val = pd.DataFrame(rule['sweep'])
    keys = ['threshold', 'min_area_m2', 'min_score', 'min_verify']
    def at(df, r): return df.loc[(df[keys] == pd.Series({k: r[k] for k in keys})).all(1)].iloc[0][['tp', 'fp', 'fn', 'f1']].to_dict()
    card_rule = detect_rule(card)
    side = [dict(min_verify=v, val=at(val, card_rule | dict(min_verify=v)), test=at(test, card_rule | dict(min_verify=v))) for v in vs]
    res = dict(what=__doc__.splitlines()[0], verifier=a.verifier, model='shipped unet4', model_key=cache_key(card), renders=a.renders,
               data=f'synthetic benchmark (hard), val and test sites, seeds 0..{a.renders - 1}: SYNTHETIC scenes, not real NAIP',
               chosen_on_val={k: rule[k] for k in keys + ['f1', 'n_facilities']}, test_at_chosen=at(test, rule),
               card_rule={k: card_rule[k] for k in ('threshold', 'min_area_m2', 'min_score')}, card_rule_by_min_verify=side,
               seconds=round(time.time() - t0, 1), provenance=provenance(kind='verifier benchmark'))
    Path(a.out).write_text(json.dumps(res, indent=1, default=float))
    print('chosen on val:', res['chosen_on_val'], '-> test', res['test_at_chosen'])
    for r in side: print(f"card rule, min_verify {r['min_verify']}: val F1 {r['val']['f1']:.3f} ({r['val']['tp']:.0f} found, {r['val']['fp']:.0f} false), "
                         f"test F1 {r['test']['f1']:.3f} ({r['test']['tp']:.0f} found, {r['test']['fp']:.0f} false)")
    print('->', a.out)

if __name__ == '__main__': main()
