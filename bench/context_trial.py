"""Trial: does a coarser, wider view of each chip in training (context) lift facility F1 on single site scenes?

A 256 px chip at 0.6 m shows 154 m: less than one hall of the Meta campus (about 190 m a side), so the pixels inside a
big roof never see the yards, substations and roof-unit grid at its edges. This trial fine-tunes the shipped unet4 on a
mix of ordinary chips and chips that show 307 m at 1.2 m (512 px renders averaged down 2x, as GDAL's `average`), then
scores it on the site scenes of `bench_sites.py` (same renders, same verifier), with four ways to read a scene: the
full-resolution pass alone (`full`), a half-resolution pass alone (`half`), and their mean or maximum. Which way, and
the facility rule, are chosen on the val scenes; the test scenes are scored for the chosen way only, with the errors and the data centers found by roof brightness.
Chips, model, probabilities and evaluations are cached in --work (a run from scratch: about 10 min of chips, 43 min
of training, 20 min of scoring). A further round continues from the first (--init runs/context/unet4_context --run NAME),
with --dark on a mix that adds chips whose roofs, of every class alike, are dark half the time. --fresh N also scores
the chosen way on N further test renders (seeds --renders onwards), and --val-renders N chooses the way and rule on N val renders.
--cap-area chooses the minimum area only among `area_candidates` (at most half the smallest data center of the train split).
A --run whose folder already holds a model (model.json) is scored as it is, without training: e.g. the soup of unet4 and round 1
(`train.average_models` into runs/context/unet4_soupctx; `context_trial_soup.json`).
The cached mixes of rounds 1 to 3 were made before `chips.mix_chips`, by code that kept the chip ids of the 256 px sets (the same
chips in the same order as a rerun makes; round 3's 256 px dark chips were lost to an id clash, see 07).
The rounds fine-tuned the unet4 shipped until 2026-11-30 (05b's average of stages 3 and 4); --init defaults to the shipped
unet4, which since then is that soup (05b's stages 5 and 6), so a rerun from scratch needs --init <that older model>.
SYNTHETIC scenes: not real-NAIP accuracy.

    .venv/bin/python bench/context_trial.py [--work runs/context] [--sites runs/bench/sites] [--run unet4_context --init SHIPPED --epochs 12 --lr 5e-4 --seed 6 --minutes 42] [--dark] [--renders 9 --val-renders 18 --fresh 9] [--tta] [--cap-area]
"""
import argparse, json, tempfile, time, warnings
from pathlib import Path
import numpy as np, pandas as pd, rasterio
from rasterio.features import geometry_mask
from scipy.ndimage import zoom
from datacenter_detector.core import LABELS, BAND_NAMES, provenance
from datacenter_detector.chips import make_chips, mix_chips, average_down
from datacenter_detector.masks import make_masks
from datacenter_detector.train import train
from datacenter_detector.labels import load_labels
from datacenter_detector.inference import load_detector
from datacenter_detector.evaluation import scene_probs, tune_facility_rule, labels_within, matched, _is_dc, area_candidates, AREAS
from bench_sites import KEYS, evaluations, at, ceiling, errors, kept

WAYS = dict(full=lambda f, h: f, half=lambda f, h: h, mean=lambda f, h: (f + h)/2, max=np.maximum)

DARK_P = (0.1, 0.1, 0.15, 0.5, 0.15)   # roof types (synth.ROOF_TYPES) of the dark-leaning chips: half of all roofs dark, for every class alike

def training_chips(work, dark=False):
    "The mix (`chips.mix_chips`): 256 px chips at 0.6 m (seed 5, 8 placements per data center) + 512 px renders (seeds 3 and 4) averaged down to 256 px at 1.2 m; with `dark`, also chips whose roofs are drawn from DARK_P (256 px, seed 8, 6 placements; 512 px averaged down, seed 9, 4)."
    sets = [('c256', 256, 8, 5, None), ('chips512', 512, 4, 3, None), ('c512', 512, 12, 4, None)] + [('d256', 256, 6, 8, DARK_P), ('d512', 512, 4, 9, DARK_P)]*dark
    mix, masks = work/('mix_dark' if dark else 'mix'), work/('mix_dark_masks' if dark else 'mix_masks')
    if (masks/'.done').exists(): return mix, masks
    for d, size, nj, seed, p in sets:
        if not (work/d/'index.geojson').exists(): make_chips(LABELS, 'synthetic', work/d, chip_size=size, n_jitter=nj, seed=seed, **({} if p is None else dict(roof_p=p)))
    mix_chips([(work/d, size//256) for d, size, *_ in sets], mix)
    make_masks(mix, LABELS, masks, verbose=False); (masks/'.done').touch()
    return mix, masks

SHIPPED = Path(__file__).parents[1]/'datacenter_detector'/'assets'/'models'/'unet4'

def fine_tune(out, mix, masks, init=SHIPPED, epochs=12, lr=5e-4, seed=6, minutes=42):
    "The model in `init` fine-tuned on the mix into `out`: one-cycle to `lr`, `epochs` of 150 batches of 16, bf16, `minutes` at most."
    if not (out/'model.json').exists():
        import torch; torch.set_num_threads(2)
        train(mix, masks, out, bs=16, epochs=epochs, lr=lr, base=16, bands=BAND_NAMES, name='unet4', patience=epochs, seed=seed, half=True,
              init=init, trainer_kw=dict(enable_progress_bar=False, max_time=f'00:00:{minutes}:00', limit_train_batches=150))
    return out

def upsample(h, shape):
    "Half-resolution probabilities `h` back to `shape`: bilinear 2x, the last row and column repeated where odd sizes leave a gap."
    z = zoom(h.astype(np.float32), 2, order=1)[:shape[0], :shape[1]]
    return np.pad(z, [(0, shape[0] - z.shape[0]), (0, shape[1] - z.shape[1])], mode='edge')

def probabilities(path, model, card, tta=False):
    "P(data center) of the scene at `path` as uint8 arrays, as the cache stores them: at full resolution (`full`) and of the scene averaged down 2x (`half`, half size); with `tta`, the full-resolution pass with the 8 D4 transforms averaged (`tta`)."
    u8 = lambda p: np.round(p*255).astype(np.uint8)
    if tta: return dict(tta=u8(scene_probs(path, model, card, tta=True, progress=False)))
    full = scene_probs(path, model, card, progress=False)
    with tempfile.TemporaryDirectory() as d: half = scene_probs(average_down(path, Path(d)/'half.tif'), model, card, progress=False)
    return dict(full=u8(full), half=u8(half))

def reader(way, cache, model, card):
    "A `probs` for `evaluate_scenes`: a scene read one `way`, from its full- and half-resolution probabilities (cached in cache/probs), or with `tta` (cached in cache/probs_tta)."
    tta = way == 'tta'
    def probs(path):
        path = Path(path); npz = cache/('probs_tta' if tta else 'probs')/f'{path.parent.parent.name}{path.parent.name[4:]}_{path.stem[4:]}.npz'   # {split}{render}_{site}
        if not npz.exists(): npz.parent.mkdir(parents=True, exist_ok=True); np.savez_compressed(npz, **probabilities(path, model, card, tta))
        z = np.load(npz)
        return z['tta']/255. if tta else WAYS[way](z['full']/255., upsample(z['half']/255., z['full'].shape))
    return probs

def by_roof(evs, labs, rule, split, sites):
    "Data centers found under `rule`, pooled over the renders of `split`, by the mean visible brightness (R, G, B; 0..255) of their roof in the scene."
    rows = []
    for s, ev in enumerate(evs):
        t = labels_within(labs[_is_dc(labs)], ev['index']); t['found'] = matched(kept(ev, rule), t)[1]
        for sid, g in t.groupby('site_id'):   # each scene read once
            with rasterio.open(Path(sites)/split/f'seed{s}'/f'site{sid}.tif') as ds:
                rgb = ds.read([1, 2, 3])
                for geom, f in zip(g.to_crs(ds.crs).geometry, g.found):
                    m = geometry_mask([geom], ds.shape, ds.transform, invert=True)
                    rows.append(dict(found=bool(f), brightness=float(rgb[:, m].mean())))
    df = pd.DataFrame(rows)
    bins = pd.cut(df.brightness, [0, 90, 130, 170, 255], labels=['0-90', '90-130', '130-170', '170-255'], include_lowest=True)
    return [dict(roof_brightness=b, found=int(g.found.sum()), of=len(g)) for b, g in df.groupby(bins, observed=False)]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', default='runs/context'); ap.add_argument('--sites', default='runs/bench/sites', help="bench_sites.py's scenes")
    ap.add_argument('--renders', type=int, default=9, help='test renders (seeds 0..N-1)')
    ap.add_argument('--val-renders', type=int, default=0, help='val renders to choose the way and the rule on (seeds 0..N-1; default: --renders)')
    ap.add_argument('--fresh', type=int, default=0, help='also score the chosen way on this many further test renders (seeds --renders onwards), never looked at before')
    ap.add_argument('--run', default='unet4_context', help='the fine-tuned model: --work/RUN; its probabilities and evaluations go to --work/scores/RUN')
    ap.add_argument('--init', default=str(SHIPPED), help='the model to fine-tune (default: the shipped unet4)')
    ap.add_argument('--epochs', type=int, default=12); ap.add_argument('--lr', type=float, default=5e-4)
    ap.add_argument('--dark', action='store_true', help='add the dark-leaning chips (DARK_P) to the mix')
    ap.add_argument('--tta', action='store_true', help="also a fifth way: the full-resolution pass with the 8 D4 transforms averaged (dcd_detect --tta, ~7x the time)")
    ap.add_argument('--cap-area', action='store_true', help='choose the minimum area among area_candidates (at most half the smallest train data center) instead of all of AREAS')
    ap.add_argument('--seed', type=int, default=6); ap.add_argument('--minutes', type=int, default=42, help='training time limit')
    ap.add_argument('--out', default=str(Path(__file__).parent/'results'/'context_trial.json'))
    a = ap.parse_args(); warnings.simplefilter('ignore')
    t0, work, labs = time.time(), Path(a.work), load_labels(LABELS)
    run, cache = fine_tune(work/a.run, *training_chips(work, a.dark), a.init, a.epochs, a.lr, a.seed, a.minutes), work/'scores'/a.run
    (model, mcard), card = load_detector(run, 'cpu'), load_detector(None, 'cpu')[1]   # polygons, sweep and verifier as the shipped card's: only the network differs
    evs = lambda split, way, seeds=a.renders: evaluations(split, seeds, a.sites, None, card, cache=cache/'evals', tag=f'_{way}', probs=reader(way, cache, model, mcard))
    found = lambda es: {r['threshold']: r['found'] for r in ceiling(es, labs, 3000.)}
    areas = area_candidates(labs) if a.cap_area else list(AREAS)
    ways, vals = {}, {}
    for way in list(WAYS) + ['tta']*a.tta:
        val = vals[way] = evs('val', way, a.val_renders or a.renders); rule = {k: tune_facility_rule(val, labs, areas=areas)[k] for k in KEYS}
        ways[way] = dict(rule_chosen_on_val=rule, val=at(val, labs, rule), val_ceiling_3000m2=found(val))
        print(way, ways[way], flush=True)
    best = max(ways, key=lambda w: ways[w]['val']['f1'])
    test = evs('test', best)
    rule = ways[best]['rule_chosen_on_val']
    ways[best] |= dict(test=at(test, labs, rule), test_ceiling_3000m2=found(test), test_errors=errors(test, labs, rule))
    if a.fresh:   # further test renders, never looked at before; and all test renders pooled
        seeds = range(a.renders, a.renders + a.fresh); more = evs('test', best, seeds)
        ways[best] |= dict(fresh_test=dict(seeds=[seeds[0], seeds[-1]], test=at(more, labs, rule), test_ceiling_3000m2=found(more), test_errors=errors(more, labs, rule, seeds)),
                           all_test=dict(seeds=[0, seeds[-1]], test=at(test + more, labs, rule)))
    ways[best] |= dict(by_roof_brightness={sp: by_roof(es, labs, rule, sp, a.sites) for sp, es in (('val', vals[best]), ('test', test))})
    sites = json.loads((Path(__file__).parent/'results'/'sites.json').read_text())
    res = dict(what=__doc__.splitlines()[0], model=str(run), training=json.loads((run/'model.json').read_text())['training'],
               data=f'synthetic site scenes (hard) of bench_sites.py, seeds 0..{(a.val_renders or a.renders) - 1} of val, 0..{a.renders + a.fresh - 1} of test: SYNTHETIC, not real NAIP',
               area_candidates_m2=areas, ways=ways, chosen_on_val=best, test=ways[best]['test'],
               shipped_for_reference=dict(note='bench/results/sites.json: the shipped unet4 on the same scenes, rule chosen on the val scenes',
                                          plain=sites['chosen_on_val_scenes'], tta=sites['tta']['chosen_on_val_scenes']),
               seconds=round(time.time() - t0, 1), provenance=provenance(kind='context trial'))
    Path(a.out).write_text(json.dumps(res, indent=1, default=float))
    print('chosen on val:', best, ways[best]['rule_chosen_on_val'], 'val', ways[best]['val'], 'test', ways[best]['test'], 'fresh test', ways[best].get('fresh_test', {}).get('test'), 'all test', ways[best].get('all_test', {}).get('test')); print('->', a.out)

if __name__ == '__main__': main()
