"The papermill runner: resume after a failing step, parameter changes cascade, clear failures, the CLI."
import json, subprocess, sys
import pandas as pd
from pathlib import Path
import pytest
from datacenter_detector.pipeline import run_pipeline, StepFailed, _demo_nb

@pytest.fixture
def tiny(tmp_path):
    nbs = tmp_path/'nbs'; nbs.mkdir()
    _demo_nb(nbs/'01_a.ipynb', "out_dir = 'a'\nn = 1", "from pathlib import Path\nPath(out_dir, 'x.txt').write_text(str(n))")
    _demo_nb(nbs/'02_b.ipynb', "out_dir = 'b'\nsrc = ''\nfail = False",
             "from pathlib import Path\nPath(out_dir, 'part.txt').write_text('half')\n"
             "if fail: raise ValueError('boom from b')\nPath(out_dir, 'y.txt').write_text(Path(src).read_text()*2)")
    _demo_nb(nbs/'03_c.ipynb', "out_dir = 'c'\nsrc = ''", "from pathlib import Path\nPath(out_dir, 'z.txt').write_text(Path(src).read_text()+'!')")
    def profile(n=1, fail=False):
        p = tmp_path/'p.yaml'
        p.write_text(f"steps:\n  01_a: {{n: {n}}}\n  02_b: {{src: '{{run}}/01_a/x.txt', fail: {str(fail).lower()}}}\n"
                     f"  03_c: {{src: '{{run}}/02_b/y.txt'}}\n")
        return p
    return nbs, tmp_path/'run', profile

def _ran(lines): return [l.split()[1] for l in lines if l.startswith('▶')]

def test_resume_after_failure(tiny):
    nbs, run, profile = tiny
    with pytest.raises(StepFailed) as e: run_pipeline(run, profile=profile(fail=True), nbs_dir=nbs)
    msg = str(e.value)
    assert '02_b.ipynb' in msg and 'cell 1' in msg and 'ValueError: boom from b' in msg
    partial = run/'notebooks'/'02_b.ipynb'
    assert partial.exists() and 'boom from b' in partial.read_text()       # kept for reading
    man = json.loads((run/'manifest.json').read_text())['steps']
    assert man['01_a']['status'] == 'done' and man['02_b']['status'] == 'failed' and '03_c' not in man
    assert (run/'01_a'/'x.txt').read_text() == '1'                          # earlier outputs stay valid
    lines = []; run_pipeline(run, profile=profile(fail=False), nbs_dir=nbs, log=lines.append)
    assert _ran(lines) == ['02_b', '03_c']                                  # resumes from the failed step
    assert (run/'03_c'/'z.txt').read_text() == '11!'

def test_param_change_reruns_that_step_and_later(tiny):
    nbs, run, profile = tiny
    run_pipeline(run, profile=profile(n=1), nbs_dir=nbs)
    lines = []; run_pipeline(run, profile=profile(n=1), nbs_dir=nbs, log=lines.append)
    assert _ran(lines) == []
    lines = []; run_pipeline(run, profile=profile(n=5), nbs_dir=nbs, log=lines.append)
    assert _ran(lines) == ['01_a', '02_b', '03_c'] and (run/'03_c'/'z.txt').read_text() == '55!'
    lines = []; run_pipeline(run, profile=profile(n=5), nbs_dir=nbs, steps=['03'], force=True, log=lines.append)
    assert _ran(lines) == ['03_c']

def test_stale_outputs_never_mix(tiny):
    nbs, run, profile = tiny
    run_pipeline(run, profile=profile(), nbs_dir=nbs)
    (run/'02_b'/'stale.txt').write_text('old')
    run_pipeline(run, profile=profile(n=2), nbs_dir=nbs)
    assert not (run/'02_b'/'stale.txt').exists()

def test_unknown_parameter_is_an_error(tiny, tmp_path):
    nbs, run, _ = tiny
    p = tmp_path/'bad.yaml'; p.write_text("steps:\n  01_a: {nn: 3}\n")
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['nn'\].*declares"): run_pipeline(run, profile=p, nbs_dir=nbs)

def test_cli_reports_failure(tiny):
    nbs, run, profile = tiny
    r = subprocess.run([Path(sys.executable).parent/'dcd_pipeline', '--profile', str(profile(fail=True)), '--out', str(run),
                        '--nbs-dir', str(nbs)], capture_output=True, text=True)
    assert r.returncode != 0 and 'Step 02_b (02_b.ipynb) failed' in r.stderr
    r = subprocess.run([Path(sys.executable).parent/'dcd_pipeline', '--profile', 'nope'], capture_output=True, text=True)
    assert r.returncode != 0 and 'built-in profiles' in r.stderr

# --- the real notebooks ---------------------------------------------------------------------------------------
import geopandas as gpd, papermill as pm, rasterio, yaml
from datacenter_detector.core import repo_dir
from datacenter_detector.pipeline import PROFILES, load_config
from chromium import screenshot, count_colour

@pytest.mark.parametrize('profile', sorted(p.stem for p in PROFILES.glob('*.yaml')))
def test_profiles_name_real_parameters(profile):
    "Every parameter a built-in profile sets is declared in the step notebook's parameters cell."
    nbs = repo_dir()/'nbs'
    for step, params in load_config(profile=profile)['steps'].items():
        declared = set(pm.inspect_notebook(str(nbs/f'{step}.ipynb')))
        assert 'out_dir' in declared, step
        assert set(params) <= declared, (step, set(params) - declared)

def test_smoke_pipeline_end_to_end(tmp_path):
    "The smoke profile runs the real notebooks 01 -> 02 -> 06 -> 07 headless, hands artifacts through the run folder, and its report renders."
    run = tmp_path/'smoke'
    r = subprocess.run([Path(sys.executable).parent/'dcd_pipeline', '--profile', 'smoke', '--out', str(run)],
                       capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    man = json.loads((run/'manifest.json').read_text())
    assert [s['status'] for s in man['steps'].values()] == ['done']*4
    with rasterio.open(run/'01_download'/'scene_00.tif') as s: assert (s.count, s.width, s.crs.to_epsg()) == (4, 768, 32613)
    labels = gpd.read_file(run/'02_label'/'labels.geojson')
    assert len(labels) == 190 and set(labels.split) == {'train', 'val', 'test'}
    det = gpd.read_file(run/'06_inference'/'detections.geojson')
    csv = pd.read_csv(run/'06_inference'/'detections.csv', comment='#')   # the CSV keeps its columns even when nothing is found
    assert {'lat', 'lon', 'area_m2', 'score_mean', 'model'} <= set(csv.columns) and len(csv) == len(det)
    assert len(det) == 0 or det.crs.to_epsg() == 4326
    from datacenter_detector.inference import detect_rule, load_detector
    prov = json.loads((run/'06_inference'/'detections.geojson').read_text())['provenance']   # detected with the shipped card's rule
    assert float(prov['threshold']) == detect_rule(load_detector()[1])['threshold'] and prov['model'] == 'unet4'
    with rasterio.open(run/'06_inference'/'mask.tif') as s: assert s.tags()['model'] == 'unet4'
    assert json.loads((run/'07_evaluation'/'fp_density_real.json').read_text())['scenes']
    met = json.loads((run/'07_evaluation'/'metrics.json').read_text())
    assert 'NOT real NAIP' in met['data'] and met['split'] == 'test' and 0 <= met['pixel']['micro']['iou'] <= 1
    px = screenshot((run/'07_evaluation'/'report.html').as_uri(), tmp_path/'report.png')   # the run's HTML report renders
    assert count_colour(px, (0xff, 0xf4, 0xd6)) > 5000 and count_colour(px, (0xe8, 0xee, 0xf7)) > 2000  # 'measured on' box, table headers
    assert all((run/'notebooks'/f'{k}.ipynb').exists() for k in man['steps'])
    r = subprocess.run([Path(sys.executable).parent/'dcd_pipeline', '--profile', 'smoke', '--out', str(run)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.count('up to date') == 4   # a rerun does nothing
