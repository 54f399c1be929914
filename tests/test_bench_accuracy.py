"bench/bench_accuracy.py's pooling: the stored renders pool to the stored figures, and renders of different model cards are refused."
import json, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT/'bench'))
from bench_accuracy import pool

RES = json.loads((ROOT/'bench'/'results'/'accuracy_retune_fresh45.json').read_text())
ROWS = [r for r in RES['per_render'] if r['split'] == 'test' and not r['tta']]

def test_pool_gives_the_stored_figures():
    got, want = pool(ROWS), next(p for p in RES['pooled'] if p['split'] == 'test' and not p['tta'])
    assert got['renders'] == list(range(45, 54)) and got['facility'] == want['facility'] and got['pixel'] == want['pixel']

def test_pool_refuses_a_card_changed_mid_run():
    rows = ROWS[:-1] + [ROWS[-1] | dict(card=ROWS[-1]['card'] | dict(rule=dict(ROWS[-1]['card']['rule'], threshold=0.62)))]
    with pytest.raises(SystemExit, match=r'different model cards.*Score them again from a fixed model folder'): pool(rows)
