"""Training-speed benchmark: seconds per 757-chip epoch of the base-32 U-Net on this CPU, bf16 autocast +
channels_last vs plain fp32, side by side in one run, plus an accuracy check (same init, same batches: the loss
trajectories of the two must agree).

Writes bench/results/train.json and prints one summary line. Run from the repository root:
    .venv/bin/python bench/bench_train.py               # defaults: bs 16, 3 timed batches per mode
Wall time and this process's CPU time are both recorded; on a loaded shared machine the CPU-time ratio (with
--threads 1) is the more trustworthy one. Time per epoch is extrapolated from a few timed training steps (forward, loss, backward, AdamW step on 16 chips of
256x256) plus the measured per-chip data-loading time (read + augment + normalise of real-format COG chips), times
ceil(757/16) batches. The machine is shared with other processes: read the ratio, not the absolute numbers.
"""
import argparse, json, math, os, platform, shutil, tempfile, time
from pathlib import Path
import numpy as np, torch
from datacenter_detector.core import autocast_dtype, cpu_has_bf16, seed_everything
from datacenter_detector.data import ChipDataModule, make_toy_chips
from datacenter_detector.unet import UNet, n_params, count_flops
from datacenter_detector.train import make_loss, ONE_CYCLE

HERE = Path(__file__).resolve().parent
RES = HERE/'results'/'train.json'
EPOCH_CHIPS = 757

def batches(dm, n):
    "n training batches from the DataModule (augmented, kind-balanced), kept in memory."
    it, out = iter(dm.train_dataloader()), []
    while len(out) < n:
        try: out.append(next(it))
        except StopIteration: it = iter(dm.train_dataloader())
    return out

def make(base, fast, seed=0):
    "The U-Net and its optimiser; `fast`: channels_last (bf16 autocast is applied in `step`)."
    torch.manual_seed(seed)
    m = UNet(4, base).train()
    if fast: m = m.to(memory_format=torch.channels_last)
    return m, torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=ONE_CYCLE['wd'])

def step(m, opt, lf, x, y, fast):
    "One training step; returns the loss."
    if fast: x = x.contiguous(memory_format=torch.channels_last)
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=fast): loss = lf(m(x), y)
    loss.backward(); opt.step()
    return loss.item()

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--base', type=int, default=32); ap.add_argument('--bs', type=int, default=16)
    ap.add_argument('--timed', type=int, default=3, help='timed batches per mode (after one warm-up batch)')
    ap.add_argument('--traj', type=int, default=8, help='steps of the accuracy (loss-trajectory) comparison')
    ap.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch threads (1: CPU time is load-robust)')
    a = ap.parse_args()
    torch.set_num_threads(a.threads); seed_everything(0)
    load0 = os.getloadavg()
    tmp = Path(tempfile.mkdtemp())
    chips, masks = make_toy_chips(tmp, n=dict(train=2*a.bs, val=3), size=256)
    dm = ChipDataModule(chips, masks, bs=a.bs); dm.setup('fit')
    # data loading: per chip, through the real Dataset (read COG, augment, normalise)
    t, c, n = time.perf_counter(), time.process_time(), 0
    for i in range(len(dm.train_ds)): dm.train_ds[i]; n += 1
    load_s, load_cpu = (time.perf_counter() - t)/n, (time.process_time() - c)/n
    data = batches(dm, max(a.timed + 1, a.traj))
    shutil.rmtree(tmp)   # the batches are in memory now
    lf = make_loss('bce_dice')
    # speed: both modes warmed up, then timed batches alternating fp32 / bf16 so that load changes hit both alike
    models = {k: make(a.base, k == 'bf16') for k in ('fp32', 'bf16')}
    for k, (m, o) in models.items(): step(m, o, lf, *data[0], k == 'bf16')
    times, cpu = {k: [] for k in models}, {k: [] for k in models}
    for i in range(a.timed):
        for k, (m, o) in models.items():
            t, c = time.perf_counter(), time.process_time()
            step(m, o, lf, *data[1 + i % (len(data)-1)], k == 'bf16')
            times[k].append(time.perf_counter() - t); cpu[k].append(time.process_time() - c)
    nb = math.ceil(EPOCH_CHIPS/a.bs)
    step_s = {k: float(np.median(v)) for k, v in times.items()}
    epoch_s = {k: nb*step_s[k] + EPOCH_CHIPS*load_s for k in step_s}
    cpu_s = {k: float(np.median(v)) for k, v in cpu.items()}  # CPU seconds of this process: less sensitive to other processes' load
    epoch_cpu_s = {k: nb*cpu_s[k] + EPOCH_CHIPS*load_cpu for k in cpu_s}
    # accuracy: the same init and the same batches, fp32 vs bf16+channels_last, loss trajectory compared
    traj = {}
    for k in ('fp32', 'bf16'):
        seed_everything(1); m, o = make(a.base, k == 'bf16', seed=1)
        traj[k] = [step(m, o, lf, *data[i], k == 'bf16') for i in range(a.traj)]
    f, b = np.array(traj['fp32']), np.array(traj['bf16'])
    rel = float(np.max(np.abs(f - b)/np.abs(f)))
    speedup = step_s['fp32']/step_s['bf16']
    res = dict(
        what=f'seconds per {EPOCH_CHIPS}-chip training epoch, UNet(in_ch=4, base={a.base}, depth=4), batch {a.bs}, 256x256 chips, BCE+Dice, AdamW',
        method=(f'extrapolated: median of {a.timed} timed training steps per mode (after 1 warm-up step), alternating fp32 and bf16, '
                f'times ceil({EPOCH_CHIPS}/{a.bs})={nb} batches, plus {EPOCH_CHIPS} x the measured per-chip data-loading time '
                f'(read COG + augment + normalise, single process). Not a full epoch.'),
        params_M=round(n_params(UNet(4, a.base))/1e6, 3), gflop_fwd_per_chip=round(count_flops(UNet(4, a.base))/1e9, 2),
        step_s=step_s, step_times_s=times, data_load_s_per_chip=round(load_s, 4),
        epoch_s={k: round(v, 1) for k, v in epoch_s.items()}, epoch_min={k: round(v/60, 2) for k, v in epoch_s.items()},
        speedup_bf16_channels_last=round(speedup, 2),
        cpu_time=dict(note=(f'CPU seconds used by this process ({a.threads} thread(s)), median per step: what the step costs on cores of '
                            f'its own; with 1 thread this is the load-robust figure on a shared machine'),
                      step_cpu_s=cpu_s, step_cpu_times_s=cpu, data_load_cpu_s_per_chip=round(load_cpu, 4),
                      epoch_cpu_min={k: round(v/60, 2) for k, v in epoch_cpu_s.items()},
                      epoch_min_on_2_idle_cores_est={k: round(v/60/2, 2) for k, v in epoch_cpu_s.items()},
                      speedup_bf16_channels_last=round(cpu_s['fp32']/cpu_s['bf16'], 2)),
        target=dict(epoch_min_max=6, speedup_min=2, epoch_met=epoch_s['bf16']/60 <= 6, speedup_met=speedup >= 2,
                    cpu_time_speedup_met=cpu_s['fp32']/cpu_s['bf16'] >= 2, cpu_time_epoch_on_2_idle_cores_met=epoch_cpu_s['bf16']/120 <= 6),
        accuracy=dict(loss_fp32=[round(v, 5) for v in f], loss_bf16=[round(v, 5) for v in b], max_rel_diff=round(rel, 4),
                      tolerance=0.05, ok=rel <= 0.05, note=f'same init, same {a.traj} batches; loss per step'),
        machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), threads=a.threads, cpu_bf16=cpu_has_bf16(),
                     autocast=str(autocast_dtype(torch.device('cpu'))), torch=torch.__version__,
                     loadavg_before=[round(x, 2) for x in load0], loadavg_after=[round(x, 2) for x in os.getloadavg()],
                     shared='yes: other processes ran on the same 2 cores during this run; absolute times are noisy, the ratio less so'),
    )
    RES.parent.mkdir(parents=True, exist_ok=True); RES.write_text(json.dumps(res, indent=1))
    print(f"train bench: {EPOCH_CHIPS}-chip epoch at base {a.base}, bs {a.bs}: fp32 {res['epoch_min']['fp32']} min, "
          f"bf16+channels_last {res['epoch_min']['bf16']} min ({speedup:.2f}x; target <=6 min and >=2x: "
          f"{'met' if res['target']['epoch_met'] and res['target']['speedup_met'] else 'NOT met'}); CPU time {cpu_s['fp32']/cpu_s['bf16']:.2f}x, "
          f"est. {res['cpu_time']['epoch_min_on_2_idle_cores_est']['bf16']} min on 2 idle cores; loss trajectory max rel diff "
          f"{rel:.3%} ({'ok' if rel <= 0.05 else 'NOT ok'}); load avg {res['machine']['loadavg_before'][0]}->{res['machine']['loadavg_after'][0]} "
          f"on {os.cpu_count()} shared cores -> {RES.relative_to(HERE.parent)}")

if __name__ == '__main__': main()
