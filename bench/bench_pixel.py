"""Pixel IoU of model folders side by side on the synthetic benchmark: each model's threshold chosen on val renders, test renders measured.

For each model folder: the pixel threshold with the best pixel F1 on `--renders` renders of the benchmark's val chips
(pooled; `train.best_threshold` over 07's `pixel_hists`, as `tune_threshold`), then pixel precision, recall, F1
and IoU at that threshold on the test chips of renders 0..renders-1 and of `--fresh` renders after them. Pixel figures
only (no facility rule): a quick comparison of candidate models before the slower facility benches. The renders are
those of bench_accuracy.py (test) and dcd_tune_rule (val), made if missing. SYNTHETIC scenes, not real-NAIP accuracy.

    .venv/bin/python bench/bench_pixel.py MODEL [MODEL ...] [--renders 9] [--fresh 9] [--out bench/results/pixel.json]
"""
import argparse, json, time, warnings
from pathlib import Path
from datacenter_detector.unet import load_model
from datacenter_detector.train import scores, best_threshold
from datacenter_detector.evaluation import pixel_hists
from datacenter_detector.core import provenance

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('models', nargs='+', help='model folders (model.json + model.safetensors)')
    ap.add_argument('--renders', type=int, default=9, help='val renders to choose the threshold on (seeds 0..renders-1), and the first test renders')
    ap.add_argument('--fresh', type=int, default=9, help='test renders after those (seeds renders..renders+fresh-1)')
    ap.add_argument('--val-dir', default='runs/benchmark_val', help="dcd_tune_rule's val renders (seed<s>)")
    ap.add_argument('--test-dir', default='runs/bench/accuracy/test', help="bench_accuracy.py's test renders (seed<s>)")
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'pixel.json'))
    a = ap.parse_args()
    warnings.simplefilter('ignore')
    rows, t0 = [], time.time()
    sets = dict(test=range(a.renders), fresh=range(a.renders, a.renders + a.fresh))
    for m in a.models:
        net, card = load_model(m, 'cpu')
        vh = pixel_hists(net, card, 'val', a.val_dir, range(a.renders))
        val = best_threshold(*vh); k = round(val['threshold']*len(vh[0]))   # the chosen bin edge
        r = dict(model=str(m), sha256=card.get('sha256'), threshold=val['threshold'], val=val,
                 **{f'{name}_{seeds[0]}_{seeds[-1]}': scores(*pixel_hists(net, card, 'test', a.test_dir, seeds), k) for name, seeds in sets.items() if len(seeds)})
        rows.append(r)
        print(m, 'threshold', r['threshold'], 'IoU: val', round(val['iou'], 4), *(f"{k_} {v['iou']:.4f}" for k_, v in r.items() if k_.startswith(('test', 'fresh'))), flush=True)
    res = dict(what=__doc__.splitlines()[0], data=f'synthetic benchmark (hard): val renders 0..{a.renders - 1}, test renders 0..{a.renders + a.fresh - 1}: SYNTHETIC scenes, not real NAIP',
               models=rows, seconds=round(time.time() - t0, 1), provenance=provenance(kind='pixel benchmark'))
    Path(a.out).write_text(json.dumps(res, indent=1, default=float)); print('->', a.out)

if __name__ == '__main__': main()
