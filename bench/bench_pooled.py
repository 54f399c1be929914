"""Issue 6's test figures for one model pooled over every test render benchmarked, with bootstrap intervals over renders.

Sets of nine renders of the two test sites give figures far apart (the shipped unet4's facility F1 on the benchmark's
chips: 0.844, 0.835 and 0.955 on renders 0-8, 9-17 and 18-26), so a figure from one set says little. This reads the
per-render counts that `bench_accuracy.py` (the benchmark's chips: pixel tp/fp/fn, facilities found/false) and
`bench_sites.py` (one scene per site: the errors at the rule chosen on the val scenes) wrote, refuses files of
different models or rules and renders counted twice, pools them, and resamples the renders (07's `bootstrap_ci`,
`--boot` times, seeded) for a 90% interval, over all renders and over the renders made after every choice was made
(`--held-out-chips`, `--held-out-scenes`: the first such seed). Nothing is re-run. SYNTHETIC scenes: not real-NAIP accuracy.

    .venv/bin/python bench/bench_pooled.py [--chips accuracy_verify4b_fresh27.json ...] [--scenes sites_verify4b_fresh63.json ...] [--scene-rule card] [--out pooled.json]

The defaults pool the shipped unet4 + verify4b (since 2026-12-01). The pair shipped before (unet4 + verify4) was pooled by

    .venv/bin/python bench/bench_pooled.py --chips accuracy.json accuracy_fresh.json accuracy_fresh18.json accuracy_fresh27.json \
        --scenes sites.json sites_fresh45.json sites_fresh63.json --scene-rule chosen --held-out-chips 9 --held-out-scenes 27 --out pooled_verify4.json
"""
import argparse, json, sys
from collections import Counter
from pathlib import Path
import pandas as pd
from datacenter_detector.core import provenance
from datacenter_detector.evaluation import bootstrap_ci, stat_of

RES = Path(__file__).parent/'results'

def read(f, keys, what):
    "A results JSON, refused with its name if it lacks `keys` (not a `what` result)."
    j = json.loads(Path(f).read_text())
    if missing := [k for k in keys if k not in j]: raise ValueError(f"{f}: not a {what} result (no {', '.join(missing)}).")
    return j

def chip_rows(files):
    "Per test render of `bench_accuracy.py` JSONs (no TTA): seed, pixel tp/fp/fn, facilities true/found/false, weights (sha256, where recorded); the card they share."
    rows, cards = [], set()
    for f in files:
        j = read(f, ['per_render'], 'bench_accuracy.py')
        for r in j['per_render']:
            if r['split'] != 'test' or r['tta']: continue
            cards.add(json.dumps({k: r['card'][k] for k in ('name', 'threshold', 'rule')}, sort_keys=True))
            rows.append(dict(seed=r['seed'], tp=r['pixel']['tp'], fp=r['pixel']['fp'], fn=r['pixel']['fn'],
                             n_true=r['facility']['n_true'], found=r['facility']['found'], false=r['facility']['false'], file=Path(f).name, sha256=r['card'].get('sha256')))
    if len(cards) > 1: raise ValueError(f"{', '.join(map(str, files))}: made with {len(cards)} different cards (threshold or rule); pool files of one model only.")
    return rows, json.loads(cards.pop()) if cards else None

def scene_rows(files, at='chosen'):
    "Per test render of `bench_sites.py` JSONs, at the rule chosen on the val scenes (`at='chosen'`) or the card's (`'card'`): seed, facilities true/found/false, weights (sha256, where recorded); that rule."
    rows, rules, (rule, errs) = [], set(), dict(chosen=('chosen_on_val_scenes', 'test_errors_at_chosen'), card=('card_rule', 'test_errors_at_card'))[at]
    for f in files:
        j = read(f, [rule, 'n_facilities', errs], 'bench_sites.py')
        rules.add(json.dumps({k: v for k, v in j[rule].items() if k not in ('val', 'test')}, sort_keys=True))
        n = j['n_facilities']['test']//len(j[errs])   # the same sites in every render
        for r in j[errs]:
            miss, false = (sum(e['error'] == k for e in r['errors']) for k in ('missed', 'false'))
            rows.append(dict(seed=r['seed'], n_true=n, found=n - miss, false=false, file=Path(f).name, sha256=j.get('sha256')))
    if len(rules) > 1: raise ValueError(f"{', '.join(map(str, files))}: the rules ({rule}) differ ({len(rules)}); pool runs of one model only.")
    return rows, json.loads(rules.pop()) if rules else None

def check_weights(rows):
    "Refuse files (chips and scenes alike) that record different model weights; files that record none pass."
    shas = {r['sha256'] for r in rows if r.get('sha256')}
    if len(shas) > 1: raise ValueError(f"{', '.join(sorted({r['file'] for r in rows if r.get('sha256')}))}: made with {len(shas)} different model weights ({', '.join(s[:12] for s in sorted(shas))}); pool runs of one model only.")

def check_rows(rows, what):
    "Refuse no test renders at all, and renders (seeds) that appear in more than one of the files."
    if not rows: raise ValueError(f"{what}: the files hold no test render; pass bench results that measured the test split.")
    if twice := sorted(s for s, n in Counter(r['seed'] for r in rows).items() if n > 1): raise ValueError(f"{what}: renders counted twice: {twice}; pass each run once.")

def pooled(rows, boot, pixel=False):
    "Facility F1 (and pixel IoU if `pixel`) of the counts summed over `rows`, with 90% intervals from `bootstrap_ci` resampling the renders; None for no rows."
    if not rows: return None
    fac = pd.DataFrame([dict(seed=r['seed'], tp=r['found'], fp=r['false'], fn=r['n_true'] - r['found']) for r in rows])
    figs = dict(facility_f1=bootstrap_ci(fac, stat_of('f1'), 'seed', boot, ci=0.9))
    if pixel: figs = dict(pixel_iou=bootstrap_ci(pd.DataFrame(rows), stat_of('iou'), 'seed', boot, ci=0.9)) | figs
    return {k: dict(value=round(v['value'], 4), interval_90=[round(v['lo'], 4), round(v['hi'], 4)]) for k, v in figs.items()} | dict(
        renders=len(rows), seeds=sorted(r['seed'] for r in rows), **{k: int(sum(r[k] for r in rows)) for k in ('tp', 'fp', 'fn', 'n_true', 'found', 'false') if k in rows[0]})

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--chips', nargs='*', default=['accuracy_verify4b_fresh27.json', 'accuracy_verify4b_fresh36.json'], help='bench_accuracy.py JSONs (in bench/results unless a path)')
    ap.add_argument('--scenes', nargs='*', default=['sites_verify4b_fresh63.json', 'sites_verify4b_fresh81.json'], help='bench_sites.py JSONs')
    ap.add_argument('--scene-rule', choices=['chosen', 'card'], default='card', help="score the scenes at the rule chosen on the val scenes, or at the card's rule (bench_sites.py files that record its errors)")
    ap.add_argument('--held-out-chips', type=int, default=27, help='first chip render that no choice of model, threshold or rule had seen when it was scored')
    ap.add_argument('--held-out-scenes', type=int, default=63, help='first scene render that no choice had seen')
    ap.add_argument('--boot', type=int, default=2000, help='bootstrap resamplings of the renders')
    ap.add_argument('--out', default=str(RES/'pooled.json'))
    a = ap.parse_args()
    path = lambda f: Path(f) if Path(f).exists() or '/' in f else RES/f
    try:
        chips, card = chip_rows([path(f) for f in a.chips]); scenes, rule = scene_rows([path(f) for f in a.scenes], a.scene_rule)
        check_rows(chips, 'chips'); check_rows(scenes, 'scenes'); check_weights(chips + scenes)
    except (ValueError, OSError) as e: sys.exit(f"bench_pooled: error: {e}")
    res = dict(what=__doc__.splitlines()[0], targets=dict(pixel_iou=0.8, facility_f1=0.9), card=card, scene_rule=rule, scenes_at=a.scene_rule,
               data="synthetic benchmark (hard), test sites: SYNTHETIC scenes, not real NAIP",
               chips=pooled(chips, a.boot, pixel=True) | dict(files=sorted({r['file'] for r in chips})),
               chips_held_out=pooled([r for r in chips if r['seed'] >= a.held_out_chips], a.boot, pixel=True),
               scenes=pooled(scenes, a.boot) | dict(files=sorted({r['file'] for r in scenes})),
               scenes_held_out=pooled([r for r in scenes if r['seed'] >= a.held_out_scenes], a.boot),
               provenance=provenance(kind='pooled benchmark figures'))
    for k in ('chips', 'chips_held_out', 'scenes', 'scenes_held_out'):
        if res[k]: print(k, res[k]['renders'], 'renders:', {n: (v['value'], v['interval_90']) for n, v in res[k].items() if isinstance(v, dict) and 'value' in v})
    Path(a.out).write_text(json.dumps(res, indent=1))
    print('->', a.out)

if __name__ == '__main__': main()
