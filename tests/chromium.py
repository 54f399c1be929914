"Headless Chromium screenshots for the tests that check a page really renders (Debian's chromium; no network)."
import subprocess
from pathlib import Path
import numpy as np
from PIL import Image

CHROME = '/usr/bin/chromium'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']

def screenshot(url:str, out:Path, size=(1200, 3000))->np.ndarray:
    "Render `url` in headless Chromium at `size` (width, height); return the screenshot's RGB pixels."
    subprocess.run([CHROME, *FLAGS, f'--user-data-dir={Path(out).parent/"chromium-profile"}', f'--screenshot={out}',
                    f'--window-size={size[0]},{size[1]}', url], check=True, capture_output=True, timeout=120)
    return np.asarray(Image.open(out).convert('RGB')).astype(int)

def count_colour(px:np.ndarray, rgb, tol:int=6)->int:
    "Pixels within `tol` (summed over channels) of the colour `rgb`."
    return int((np.abs(px - list(rgb)).sum(-1) <= tol).sum())
