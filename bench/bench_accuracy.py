"""The shipped model's accuracy on the synthetic benchmark (issue 6's targets), with and without test-time augmentation.

Issue 6 asks for pixel IoU >= 0.80 and facility F1 >= 0.90 on the synthetic benchmark's held-out test sites (hard
difficulty). This runs `measure_model` (what `dcd_evaluate` runs: the card's threshold and val-tuned facility rule) on
the benchmark's val and test sites, plain and with `tta` (the 8 D4 transforms averaged), side by side, and writes
bench/results/accuracy.json. SYNTHETIC scenes: these are not real-NAIP accuracy figures.

    .venv/bin/python bench/bench_accuracy.py [--model <model folder>] [--work runs/bench/accuracy]
"""
import argparse, json, time, warnings
from pathlib import Path
from datacenter_detector.evaluation import measure_model, synthetic_benchmark
from datacenter_detector.labels import load_labels
from datacenter_detector.core import LABELS, provenance

TARGETS = dict(pixel_iou=0.80, facility_f1=0.90)

def measure(model, chips, masks, split, labels, tta=False):
    "Pixel and facility figures of `model` on one split of a benchmark (also used by peer_budget.py), and its card."
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        _, met, card = measure_model(model, str(chips), str(masks), labels, split, n_boot=200, tta=tta)
    px, fac = met['pixel']['micro'], met['facility']['either']
    return dict(split=split, tta=tta, n_chips=met['n_chips'], n_sites=met['n_sites'],
                pixel={k: round(px[k], 4) for k in ('iou', 'dice', 'precision', 'recall')},
                facility=dict(n_true=met['facility']['n_true'], found=fac['tp'], false=fac['fp'], f1=round(fac['f1'], 4)),
                seconds=round(time.time() - t0, 1), card=dict(name=card['name'], threshold=card['threshold'], rule=card.get('detect'))), card

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default=None, help='model folder (default: the shipped unet4)')
    ap.add_argument('--work', default='runs/bench/accuracy', help='where the benchmark chips are made (cached)')
    a = ap.parse_args()
    labels, rows = load_labels(LABELS), []
    for split in ('val', 'test'):
        chips, masks = synthetic_benchmark(Path(a.work)/split, split)
        for tta in (False, True):
            rows.append(measure(a.model, chips, masks, split, labels, tta)[0])
            r = rows[-1]
            print(f"{split} tta={tta}: pixel IoU {r['pixel']['iou']:.3f}, facility F1 {r['facility']['f1']:.3f} "
                  f"({r['facility']['found']} of {r['facility']['n_true']} found, {r['facility']['false']} false), {r['seconds']} s")
    test = {r['tta']: r for r in rows if r['split'] == 'test'}
    met = {str(t): dict(pixel_iou=test[t]['pixel']['iou'] >= TARGETS['pixel_iou'], facility_f1=test[t]['facility']['f1'] >= TARGETS['facility_f1'])
           for t in (False, True)}
    res = dict(what=__doc__.splitlines()[0], model=a.model or 'shipped unet4', targets=TARGETS, met_on_test_by_tta=met,
               data='synthetic benchmark (hard), seed 0, val and test sites: SYNTHETIC scenes, not real NAIP', rows=rows,
               provenance=provenance(kind='accuracy benchmark'))
    out = Path(__file__).parent/'results'/'accuracy.json'; out.write_text(json.dumps(res, indent=1))
    print('targets met on test (plain / tta):', met['False'], met['True'], '->', out)

if __name__ == '__main__': main()
