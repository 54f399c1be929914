"""Which test data centers the shipped model misses and what its false detections lie on, render by render.

A diagnostic for issue 6's facility target: on N renders of the synthetic benchmark's test sites (the renders
`bench_accuracy.py --renders N` made and cached in --work), the shipped unet4 with its card's facility rule, as
`dcd_evaluate` scores it. Each missed data center is named; each false detection is named by the labelled
look-alike buildings it covers (or 'no label'). Writes bench/results/facility_errors.json. SYNTHETIC scenes.

    .venv/bin/python bench/facility_errors.py [--work runs/bench/accuracy] [--renders 9]
"""
import argparse, json, warnings
from pathlib import Path
import pandas as pd
from datacenter_detector.evaluation import model_predictor, evaluate_chips, synthetic_benchmark, pair_table, assign, _clip_to, _is_dc
from datacenter_detector.inference import detect_rule
from datacenter_detector.labels import load_labels, assign_splits
from datacenter_detector.core import LABELS, provenance

def errors(predict, card, chips, masks, labs, seed):
    "Rows (seed, kind, name, area_m2) for the missed data centers and the false detections of one render."
    rule = detect_rule(card); t = round(rule['threshold'], 4)
    ev = evaluate_chips(predict, chips, masks, 'test', card['threshold'], sweep=(t,), card=card)
    d = ev['detections'][t]; d = d[~(d.area_m2 < rule['min_area_m2'])].to_crs(4326).reset_index(drop=True)
    truth = _clip_to(labs[_is_dc(labs)], ev['index']).reset_index(drop=True)
    mt = assign(pair_table(d, truth, 30.), 'either', 0.5, 30., 'hungarian')
    negs = labs[~_is_dc(labs)]
    missed = [dict(seed=seed, kind='missed', name=truth.name.iloc[i]) for i in sorted(set(range(len(truth))) - set(mt.truth))]
    false = [dict(seed=seed, kind='false', area_m2=round(float(d.area_m2.iloc[i])),
                  name=','.join(f'{c}:{n}' for c, n in zip(h['class'], h['name'])) or 'no label')
             for i in sorted(set(range(len(d))) - set(mt.pred)) for h in [negs[negs.intersects(d.geometry.iloc[i])]]]
    return missed + false

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', default='runs/bench/accuracy', help="bench_accuracy.py's work folder (renders are made there if missing)")
    ap.add_argument('--renders', type=int, default=9)
    a = ap.parse_args()
    warnings.simplefilter('ignore')
    labs = assign_splits(load_labels(LABELS))
    predict, card = model_predictor(None, 'cpu')
    rows = [r for s in range(a.renders)
            for r in errors(predict, card, *synthetic_benchmark(Path(a.work)/'test'/f'seed{s}', 'test', seed=s), labs, s)]
    df = pd.DataFrame(rows)
    counts = df.groupby(['kind', 'name']).size().sort_values(ascending=False)
    print(counts.to_string())
    out = Path(__file__).parent/'results'/'facility_errors.json'
    out.write_text(json.dumps(dict(what=__doc__.splitlines()[0], model=card['name'], rule=detect_rule(card), renders=a.renders,
                                   data='synthetic benchmark (hard), test sites: SYNTHETIC scenes, not real NAIP',
                                   counts=[dict(kind=k, name=n, count=int(c)) for (k, n), c in counts.items()], rows=rows,
                                   provenance=provenance(kind='facility errors')), indent=1))
    print('->', out)

if __name__ == '__main__': main()
