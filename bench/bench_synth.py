"""Benchmark: render time of a 2048 x 2048 synthetic scene on one core, against the 2 s target.

Side by side in the same run, as a yardstick of how loaded this shared machine is: the time of one 2048 x 2048
float32 multiply (a scene costs roughly N of those; the ratio stays comparable across runs and machines).
Writes bench/results/synth.json and prints one summary line.

    python bench/bench_synth.py [--repeats 5]
"""
import os
for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'NUMEXPR_NUM_THREADS'): os.environ[v] = '1'
import argparse, json, platform, statistics, time, warnings
from pathlib import Path
import numpy as np, torch
torch.set_num_threads(1)
from datacenter_detector.core import Grid, provenance
from datacenter_detector.synth import render_scene, read_labels

TARGET_S = 2.0

def main(repeats:int=5):
    warnings.filterwarnings('ignore')
    lab = read_labels()
    sites = [lab[lab.fid == f].geometry.iloc[0].centroid for f in (1, 58, 47)]      # a data-center campus, a warehouse, a retail site
    grids = [Grid.around(c.x, c.y, 2048) for c in sites] + [Grid.around(-97.5, 39.0, 2048)]  # and a context-only place
    render_scene(Grid.around(sites[0].x, sites[0].y, 256))  # warm-up: label file cache, imports
    a = np.ones((2048, 2048), np.float32)
    times, refs = [], []
    for r in range(repeats):
        for i, g in enumerate(grids):
            t = time.perf_counter(); a*1.0001; refs.append(time.perf_counter() - t)
            t = time.perf_counter(); sc = render_scene(g, seed=r, extra_sites='auto'); times.append(time.perf_counter() - t)
            assert sc.img.shape == (4, 2048, 2048)
    med, ref = statistics.median(times), statistics.median(refs)
    res = dict(benchmark='synth', what='render_scene 2048x2048 (4 bands, 0.6 m), one thread', target_s=TARGET_S,
               median_s=round(med, 3), min_s=round(min(times), 3), max_s=round(max(times), 3), n=len(times),
               ratio_to_target=round(med/TARGET_S, 3), reference_multiply_ms=round(ref*1000, 2),
               scene_in_multiplies=round(med/ref, 1), meets_target=bool(med < TARGET_S),
               machine=dict(python=platform.python_version(), cpu=platform.processor() or platform.machine(), cores_used=1),
               provenance=provenance())
    out = Path(__file__).parent/'results'/'synth.json'
    out.parent.mkdir(parents=True, exist_ok=True); out.write_text(json.dumps(res, indent=1))
    print(f"synth: 2048x2048 scene median {med:.2f} s on one thread (min {min(times):.2f}, max {max(times):.2f}, n={len(times)}) "
          f"vs target {TARGET_S:.0f} s -> {med/TARGET_S:.2f}x target; = {med/ref:.0f} reference multiplies of {ref*1000:.1f} ms")

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0]); p.add_argument('--repeats', type=int, default=5)
    main(p.parse_args().repeats)
