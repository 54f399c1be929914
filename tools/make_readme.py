"""Write README.md from nbs/index.ipynb without quarto (which `nbdev_readme` needs and these machines lack).

Markdown cells are copied; code cells become ```python blocks with their text output; cells marked `#| hide`
are left out and `#|` directives are dropped, as nbdev's docs do."""
import json, sys
from pathlib import Path

def _src(c): return ''.join(c['source'])
def _hidden(c): return any(l.strip().replace(' ', '') in ('#|hide', '#|include:false') for l in _src(c).splitlines())
def _code(src): return '\n'.join(l for l in src.splitlines() if not l.lstrip().startswith('#|')).strip()

def _out(c):
    txt = []
    for o in c.get('outputs', []):
        if o.get('output_type') == 'stream': txt.append(''.join(o['text']))
        elif 'text/markdown' in o.get('data', {}): return '\n' + ''.join(o['data']['text/markdown']) + '\n'
        elif 'text/plain' in o.get('data', {}): txt.append(''.join(o['data']['text/plain']))
    return f"\n```\n{''.join(txt).rstrip()}\n```\n" if txt else ''

def readme(nb='nbs/index.ipynb'):
    "README text rendered from the notebook `nb`."
    parts = []
    for c in json.loads(Path(nb).read_text())['cells']:
        if _hidden(c): continue
        if c['cell_type'] == 'markdown': parts.append(_src(c).strip() + '\n')
        elif c['cell_type'] == 'code' and _code(_src(c)): parts.append(f"```python\n{_code(_src(c))}\n```\n" + _out(c))
    return '\n'.join(parts)

if __name__ == '__main__':
    Path(sys.argv[1] if len(sys.argv) > 1 else 'README.md').write_text(
        '<!-- Generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, then `make readme`. -->\n\n' + readme())
