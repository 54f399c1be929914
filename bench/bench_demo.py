"""Wall time of the README's main job: the `demo` pipeline profile, run from scratch into a temporary folder.

Target (issue 10): under 10 minutes on this 2-core CPU. Writes bench/results/demo.json and prints one line.
The machine may be shared: the load average at the start is recorded with the figure."""
import json, os, subprocess, sys, tempfile, time
from pathlib import Path

def main():
    out = Path(__file__).parent/'results'/'demo.json'
    with tempfile.TemporaryDirectory() as d:
        load, t0 = os.getloadavg(), time.time()
        r = subprocess.run([str(Path(sys.executable).parent/'dcd_pipeline'), '--profile', 'demo', '--out', f'{d}/demo'],
                           capture_output=True, text=True)
        secs = time.time() - t0
        steps = json.loads((Path(d)/'demo'/'manifest.json').read_text())['steps'] if r.returncode == 0 else {}
    res = dict(what='dcd_pipeline --profile demo, from scratch', ok=r.returncode == 0, seconds=round(secs, 1),
               target_s=600, met=r.returncode == 0 and secs < 600, load_avg_at_start=load, cpus=os.cpu_count(),
               steps={k: v.get('elapsed_s') for k, v in steps.items()}, stderr_tail=r.stderr[-1500:] if r.returncode else '')
    out.write_text(json.dumps(res, indent=1))
    print(f"demo: {secs:.0f} s ({'ok' if res['ok'] else 'FAILED'}; target < 600 s: {'met' if res['met'] else 'missed'}; "
          f"load at start {load[0]:.1f}) -> {out}")

if __name__ == '__main__': main()
