"""Stage-7 trial (2026-11-30; not shipped): fine-tune the shipped unet4 on fresh renders of the train sites, then average it with unet4.

From the shipped unet4 (05b's stage 6), on fresh 256 px renders of the train sites (`make_chips(LABELS, 'synthetic',
n_jitter=8, seed=7)`: 4662 chips; `make_masks` defaults): 10 epochs of 150 batches of 16, one-cycle to 3e-4, seed 7,
bf16, 2 threads (all 10 epochs ran in 30 min here), then `average_models` of it and unet4 (a third soup). Folders that
exist are not remade. How the two were then chosen, scored and not shipped (pre-registered in commit af2ddd1):

    .venv/bin/dcd_tune_rule <copy of a model> --out-dir runs/benchmark_val --renders 9 --on both --cap-area --pixel --verifier verify4
    .venv/bin/python bench/bench_pixel.py datacenter_detector/assets/models/unet4 runs/s7/unet4_soup3 runs/s7/unet4_s7 --out bench/results/pixel_stage7.json
    .venv/bin/python bench/bench_accuracy.py --model <chosen> --splits test --first 18 --renders 9 --no-tta --out bench/results/accuracy_stage7_fresh.json
    .venv/bin/python bench/bench_sites.py --model <chosen> --test-renders 18 --first-test 45 --cap-area --no-tta --out bench/results/sites_stage7.json

07's last section has the figures (SYNTHETIC scenes, not real NAIP).

    .venv/bin/python bench/stage7_trial.py [--work runs/s7]
"""
import argparse, time, warnings
from pathlib import Path
import torch
from datacenter_detector.core import LABELS, BAND_NAMES, MODELS
from datacenter_detector.chips import make_chips
from datacenter_detector.masks import make_masks
from datacenter_detector.train import train, average_models

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--work', default='runs/s7', help='chips, masks and the two model folders (unet4_s7, unet4_soup3)')
    w, t = Path(ap.parse_args().work), time.time()
    warnings.simplefilter('ignore')
    if not (w/'chips'/'index.geojson').exists(): make_chips(LABELS, 'synthetic', w/'chips', n_jitter=8, seed=7)
    if not (w/'masks'/'.done').exists(): make_masks(w/'chips', LABELS, w/'masks', verbose=False); (w/'masks'/'.done').touch()
    print('chips and masks', round(time.time() - t), 's', flush=True)
    torch.set_num_threads(2)
    if not (w/'unet4_s7'/'model.json').exists():
        train(w/'chips', w/'masks', w/'unet4_s7', bs=16, epochs=10, lr=3e-4, base=16, bands=BAND_NAMES, name='unet4', patience=12, seed=7, half=True,
              init=MODELS/'unet4', trainer_kw=dict(enable_progress_bar=False, max_time='00:00:40:00', limit_train_batches=150))
    if not (w/'unet4_soup3'/'model.json').exists():
        average_models([MODELS/'unet4', w/'unet4_s7'], w/'chips', w/'masks', w/'unet4_soup3', device='cpu')
    print('done', round(time.time() - t), 's', flush=True)

if __name__ == '__main__': main()
