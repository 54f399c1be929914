"The shrink back to the roof calibrated on val scenes through the CLI (07's calibrate_model), with the shipped model: its own file, so that pytest-xdist runs it beside test_evaluation.py."
import json, shutil, subprocess, sys
from pathlib import Path

def test_tune_rule_cli_calibrates_the_shrink(tmp_path):
    "dcd_tune_rule --shrink calibrates the shipped model's shrink back to the roof on a val render's scenes (calibrate_shrink), chooses the rule with it and writes both into the card."
    from datacenter_detector.core import MODELS
    m = tmp_path/'m'; m.mkdir()
    for f in ('model.json', 'model.safetensors'): shutil.copy(MODELS/'unet4'/f, m/f)
    card = json.loads((m/'model.json').read_text()); card['detect'].pop('shrink_m', None); card['detect'].pop('shrink', None)
    card['detect']['threshold'] = 0.4; assert card['threshold'] != 0.4   # a rule threshold other than the pixel one: the calibration sweeps it
    (m/'model.json').write_text(json.dumps(card))   # the masks' buffer (7.5 m) until calibrated
    r = subprocess.run([str(Path(sys.executable).parent/'dcd_tune_rule'), str(m), '--out-dir', str(tmp_path/'val'), '--renders', '1', '--device', 'cpu', '--on', 'scenes', '--shrink'],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rule = json.loads((m/'model.json').read_text())['detect']
    cal = rule['shrink']
    assert cal['split'] == 'val' and cal['n_matches'] >= 5 and cal['threshold'] == card['detect']['threshold']   # the val scenes' data centers, at the card's threshold
    assert 0 < rule['shrink_m'] == cal['shrink_m'] < 7.5 and cal['area_err_pct_median_unshrunk'] > 0   # unshrunk outlines are too large; the full buffer was too much
    assert f"shrink {rule['shrink_m']} m, calibrated on {cal['n_matches']} val matches" in r.stdout and 'one scene per site' in rule['chosen_on']
