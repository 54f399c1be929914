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
from datacenter_detector.evaluation import measure_model, synthetic_benchmark
from datacenter_detector.inference import detect_rule
from datacenter_detector.labels import load_labels
from datacenter_detector.core import LABELS, provenance

def errors(chips, masks, labs, seed):
    "Rows (seed, kind, name, area_m2) for the missed data centers and the false detections of one render (`evaluation.facility_errors`), and the card."
    _, met, card = measure_model(None, str(chips), str(masks), labs, 'test', n_boot=10, device='cpu')
    return [dict(seed=seed, kind=r['error'], name=r['name'] if r['error'] == 'missed' else r['on'], area_m2=round(r['area_m2']))
            for r in met['facility']['errors']], card

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', default='runs/bench/accuracy', help="bench_accuracy.py's work folder (renders are made there if missing)")
    ap.add_argument('--renders', type=int, default=9)
    a = ap.parse_args()
    warnings.simplefilter('ignore')
    labs = load_labels(LABELS)
    per = [errors(*synthetic_benchmark(Path(a.work)/'test'/f'seed{s}', 'test', seed=s), labs, s) for s in range(a.renders)]
    rows, card = [r for rs, _ in per for r in rs], per[0][1]
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
