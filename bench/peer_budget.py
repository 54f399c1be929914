"""Our U-Net against the smp Unet peer at equal training budgets (issue 6), on the synthetic benchmark's test sites.

Each pair trained on the same chips, splits, schedule and seed (05b's slow cells, work folder runs/ship05b):
stage 1 (18 epochs) and stages 1 + 2. (The shipped unet4 had third and fourth stages on new renders, which the peer did not get,
so the equal-budget pairs stop at stage 2.) Every model is evaluated with `measure_model` (what
`dcd_evaluate` runs: the card's threshold and val-tuned facility rule) on the same test chips. Its card's val and test
pixel figures are stored with it. Writes bench/results/peer_budget.json and prints one line per pair.
SYNTHETIC scenes: these are not real-NAIP accuracy figures.

    .venv/bin/python bench/peer_budget.py [--work runs/ship05b] [--bench runs/compare3/benchmark]
"""
import argparse, json
from pathlib import Path
from datacenter_detector.labels import load_labels
from datacenter_detector.core import LABELS
from bench_accuracy import measure   # the same evaluation as the accuracy benchmark (bench/ is on sys.path when run as a script)

def row(model, bench, labels):
    "A model's test evaluation (`measure`) with its card's figures (val/test pixels at its threshold) and training budget."
    r, card = measure(str(model), bench/'chips', bench/'masks', 'test', labels)
    return dict(r, model=str(model), params_M=round(card['n_params']/1e6, 2), card_val_iou=round(card['metrics']['val']['iou'], 3),
                card_test_iou=round(card['metrics']['test']['iou'], 3),
                training=dict(epochs_run=card['metrics'].get('epochs_run'), init=card['training'].get('init')))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', default='runs/ship05b'); ap.add_argument('--bench', default='runs/compare3/benchmark')
    a = ap.parse_args()
    work, bench, labels = Path(a.work), Path(a.bench), load_labels(LABELS)
    res = dict(what=__doc__.splitlines()[0], data=f'{bench} (synthetic benchmark, hard): SYNTHETIC scenes, not real NAIP', pairs={})
    pairs = {'stage 1 (18 epochs)': (work/'unet4', work/'smp_18ep'), 'stages 1 + 2': (work/'unet4_ft', work/'smp_ft')}
    for k, (ours, peer) in pairs.items():
        res['pairs'][k] = dict(ours=row(ours, bench, labels), peer=row(peer, bench, labels))
        o, p = res['pairs'][k]['ours'], res['pairs'][k]['peer']
        print(f"{k}: test IoU ours {o['pixel']['iou']:.3f} vs smp {p['pixel']['iou']:.3f}; val IoU {o['card_val_iou']} vs {p['card_val_iou']}; "
              f"facility F1 {o['facility']['f1']:.3f} vs {p['facility']['f1']:.3f}")
    out = Path(__file__).parent/'results'/'peer_budget.json'; out.write_text(json.dumps(res, indent=1))
    print('->', out)

if __name__ == '__main__': main()
