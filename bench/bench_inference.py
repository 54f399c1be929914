"""Inference benchmark: throughput (ours vs the original naive approach, side by side), peak RSS vs raster size, seams.

Writes bench/results/inference.json and prints one summary line. Run from the repository root:
    .venv/bin/python bench/bench_inference.py                # defaults below
    .venv/bin/python bench/bench_inference.py --tp-size 8192 # the issue's full-size throughput run (slow on 2 shared cores)
Figures are one run's on a shared, noisy machine: read the ratios, not the absolute numbers.
"""
import argparse, json, os, resource, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np, torch, rasterio
from rasterio.features import shapes
from shapely.geometry import shape

from datacenter_detector.core import write_raster, Grid, BAND_NAMES, autocast_dtype
from datacenter_detector.inference import detect, predict_raster, demo_scene, tile_starts, bright_roof_model
from datacenter_detector.unet import UNet, make_card, normalize, count_flops, save_model, load_model

HERE = Path(__file__).resolve().parent
RES = HERE/'results'/'inference.json'
COMPILE_RSS = True  # torch.compile at every size (by default only big rasters are compiled: the RSS ratio would mix settings)

def make_model(base=32, depth=4, seed=0):
    "The real UNet at random init (speed and memory do not depend on the weights); threshold at its 99th percentile."
    torch.manual_seed(seed)
    m = UNet(in_ch=4, base=base, depth=depth).eval()
    card = make_card(m, dict(mean=[100.]*4, std=[40.]*4), name=f'unet-base{base}-random')
    x = torch.as_tensor(np.random.default_rng(0).integers(1, 255, (1, 4, 256, 256), dtype=np.uint8))
    with torch.no_grad(): p = torch.sigmoid(m(normalize(x, card))).numpy()
    card['threshold'] = float(np.percentile(p, 99))
    return m, card

def base_scene(path, size, seed=0):
    "A synthetic 4-band uint8 scene (noise + bright roofs), written as a COG."
    rng = np.random.default_rng(seed)
    roofs = [(int(r), int(c), int(h), int(w)) for r, c, h, w in zip(rng.integers(0, size-300, size//100), rng.integers(0, size-300, size//100),
                                                                    rng.integers(40, 250, size//100), rng.integers(40, 250, size//100))]
    return demo_scene(path, size, roofs=roofs, seed=seed)

def mosaic_vrt(src, path, k):
    "A VRT of k x k copies of `src` side by side: a big raster that costs no disk."
    with rasterio.open(src) as s: W, H, tr, crs = s.width, s.height, s.transform, s.crs
    bands = []
    for b in range(1, 5):
        srcs = ''.join(f'<SimpleSource><SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>{b}</SourceBand>'
                       f'<SrcRect xOff="0" yOff="0" xSize="{W}" ySize="{H}"/><DstRect xOff="{j*W}" yOff="{i*H}" xSize="{W}" ySize="{H}"/></SimpleSource>'
                       for i in range(k) for j in range(k))
        bands.append(f'<VRTRasterBand dataType="Byte" band="{b}"><NoDataValue>0</NoDataValue><Description>{BAND_NAMES[b-1]}</Description>{srcs}</VRTRasterBand>')
    gt = ', '.join(map(str, (tr.c, tr.a, tr.b, tr.f, tr.d, tr.e)))
    Path(path).write_text(f'<VRTDataset rasterXSize="{k*W}" rasterYSize="{k*H}"><SRS>{crs.to_wkt()}</SRS><GeoTransform>{gt}</GeoTransform>{"".join(bands)}</VRTDataset>')
    return Path(path)

# ---------------------------------------------------------------- the original approach, faithfully
def naive_tile_image(image, tile_size=256, overlap=32):
    "The original's tiler: every stride up to H and W, zero-padded edge tiles, all tiles held in memory."
    C, H, W = image.shape
    tiles, stride = [], tile_size - overlap
    for i in range(0, H, stride):
        for j in range(0, W, stride):
            t = image[:, i:min(i+tile_size, H), j:min(j+tile_size, W)]
            if t.shape[1] < tile_size or t.shape[2] < tile_size:
                p = np.zeros((C, tile_size, tile_size), t.dtype); p[:, :t.shape[1], :t.shape[2]] = t; t = p
            tiles.append((t, i, j))
    return tiles

def naive_detect(path, model, card, out_mask, tile_size=256, overlap=32):
    "Whole raster in memory, tiles one at a time in fp32, majority vote, whole-mask polygonisation (as bin/detect.py did)."
    with rasterio.open(path) as src: image, tr, crs, prof = src.read(), src.transform, src.crs, src.profile
    H, W = image.shape[1:]
    image = image.astype(np.float32)
    tiles = naive_tile_image(image, tile_size, overlap)
    pred, count = np.zeros((H, W), np.uint8), np.zeros((H, W), np.float32)
    thr, n_run = card['threshold'], 0
    for tile, r, c in tiles:
        if np.count_nonzero(tile)/tile.size < 0.1: continue
        with torch.no_grad(): probs = torch.sigmoid(model(normalize(torch.from_numpy(tile)[None], card)))[0, 0].numpy()
        ah, aw = min(tile_size, H - r), min(tile_size, W - c)
        pred[r:r+ah, c:c+aw] += (probs[:ah, :aw] > thr).astype(np.uint8); count[r:r+ah, c:c+aw] += 1; n_run += 1
    with np.errstate(divide='ignore', invalid='ignore'): mask = (pred/count > 0.5).astype(np.uint8)
    mask[count == 0] = 0
    prof.update(driver='GTiff', dtype='uint8', count=1, compress='lzw', nodata=None)
    with rasterio.open(out_mask, 'w', **prof) as d: d.write(mask, 1)
    polys = [shape(g) for g, v in shapes(mask, transform=tr) if v == 1]
    return dict(tiles_run=n_run, polygons=len(polys), positive_pixels=int(mask.sum()))

def matmul_gflops(dtype=torch.bfloat16, n=2048, secs=3.):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b; t, k = time.perf_counter(), 0
    while time.perf_counter() - t < secs: a @ b; k += 1
    return 2*n**3*k/(time.perf_counter() - t)/1e9

def throughput(work, size, base):
    model, card = make_model(base)
    img = base_scene(work/f'tp_{size}.tif', size)
    mp, km2 = size*size/1e6, size*size*0.36/1e6
    flops_tile = count_flops(model, 256)
    warm = base_scene(work/'warm.tif', 512)  # first calls JIT oneDNN kernels: warm both paths up on a small raster
    predict_raster(warm, model, card); naive_detect(warm, model, card, work/'warm_mask.tif')
    n_tiles = len(tile_starts(size, 256, 224))**2  # the scene has no nodata: every tile runs
    t = time.perf_counter()
    g = detect(img, model, card, output_geojson=work/'ours.geojson', output_mask=work/'ours_mask.tif', output_prob=work/'ours_prob.tif')
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    nv = naive_detect(img, model, card, work/'naive_mask.tif')
    t_naive = time.perf_counter() - t
    with rasterio.open(work/'ours_mask.tif') as a, rasterio.open(work/'naive_mask.tif') as b: agree = float((a.read(1) == b.read(1)).mean())
    mm = matmul_gflops()
    ours_gflops = n_tiles*flops_tile/t_ours/1e9
    return dict(raster=f'{size}x{size}x4 uint8 synthetic (noise + roofs), 0.6 m', model=f'UNet base {base} depth 4, random init', 
                model_gflop_per_256_tile=flops_tile/1e9, threshold=card['threshold'],
                ours=dict(seconds=t_ours, mp_per_s=mp/t_ours, km2_per_min=km2/t_ours*60, tiles_run=n_tiles,
                          detections=len(g), settings='defaults: tile 256, overlap 32, cosine blend, batch 8, bf16 autocast + channels_last, torch.compile (big rasters; compile time included), reader/writer threads, all outputs'),
                naive=dict(seconds=t_naive, mp_per_s=mp/t_naive, km2_per_min=km2/t_naive*60, **nv,
                           settings='whole raster in memory, 256/32 tiles fp32 one at a time, majority vote, mask + polygons'),
                speedup=t_naive/t_ours, mask_agreement_ours_vs_naive=agree,
                compute_bound=dict(ours_model_gflops_per_s=ours_gflops, bf16_matmul_2048_gflops_per_s=mm, fraction=ours_gflops/mm),
                torch_threads=torch.get_num_threads())

def rss_child(size, base, work):
    "Run in a fresh process: detect on a size x size VRT mosaic; print peak RSS. base 0: the trained small UNet in work/roofnet."
    model, card = (bright_roof_model() if base < 0 else load_model(Path(work)/'roofnet', device='cpu') if base == 0 else make_model(base))
    tile = base_scene(Path(work)/'rss_base.tif', 4096) if not (Path(work)/'rss_base.tif').exists() else Path(work)/'rss_base.tif'
    img = mosaic_vrt(tile, Path(work)/f'rss_{size}.vrt', size//4096)
    t = time.perf_counter()
    g = detect(img, model, card, output_geojson=Path(work)/f'rss_{size}.geojson', output_mask=Path(work)/f'rss_{size}_mask.tif',
               output_prob=Path(work)/f'rss_{size}_prob.tif', compile=COMPILE_RSS)  # the same engine settings at every size
    # VmHWM: the peak RSS of this process image (ru_maxrss would include the parent's RSS at fork, carried across exec)
    hwm = int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])/1024
    print(json.dumps(dict(size=size, peak_rss_mb=hwm, ru_maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, seconds=time.perf_counter() - t,
                          detections=len(g))))

def rss(work, sizes, base):
    base_scene(work/'rss_base.tif', 4096)
    if base == 0 and not (work/'roofnet'/'model.json').exists():
        m, card, _ = trained_roof_unet(); save_model(m, card, work/'roofnet')
    out = []
    for s in sizes:
        r = subprocess.run([sys.executable, __file__, '--rss-child', str(s), '--rss-base', str(base), '--work', str(work)],
                           capture_output=True, text=True, check=True)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    peaks = [o['peak_rss_mb'] for o in out]
    return dict(model=(f'UNet base {base} depth 4, random init' if base > 0 else 'UNet base 8 depth 3 trained briefly on synthetic bright rectangles'
                       if base == 0 else 'BrightRoofNet (hand-set 2-layer conv): isolates the engine memory from model activations'),
                input='VRT mosaics of one 4096x4096 4-band COG (16 copies for 16384)', runs=out, ratio=peaks[-1]/peaks[0], max_peak_mb=max(peaks),
                pixels_ratio=(sizes[-1]/sizes[0])**2)

def roof_batch(rng, n=8, size=128):
    "Synthetic training pairs: noisy ground with bright rectangles (4 bands, 0..255) and their masks."
    x = rng.normal(95, 18, (n, 4, size, size)); y = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        for _ in range(rng.integers(0, 4)):
            r, c, h, w = rng.integers(-20, size-10), rng.integers(-20, size-10), rng.integers(15, 90), rng.integers(15, 90)
            r0, c0 = max(r, 0), max(c, 0)
            x[i, :3, r0:r+h, c0:c+w] = rng.normal(rng.uniform(150, 230), 8, x[i, :3, r0:r+h, c0:c+w].shape); y[i, 0, r0:r+h, c0:c+w] = 1
    return torch.as_tensor(x.clip(1, 255), dtype=torch.float32), torch.as_tensor(y)

def trained_roof_unet(steps=120, base=8, depth=3, seed=0):
    "A small UNet trained briefly to segment bright rectangles: a CNN with real context effects for the seam check."
    torch.manual_seed(seed); rng = np.random.default_rng(seed)
    m = UNet(in_ch=4, base=base, depth=depth)
    card = make_card(m, dict(mean=[100.]*4, std=[40.]*4), name=f'unet-base{base}-roofs-{steps}steps')
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    m.train()
    for i in range(steps):
        x, y = roof_batch(rng)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(m(normalize(x, card)), y)
        opt.zero_grad(); loss.backward(); opt.step()
    return m.eval(), card, float(loss)

def seams(work, size, base, offset=(37, 53)):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    model, card, loss = trained_roof_unet()
    img = base_scene(work/'seam.tif', size, seed=1)
    a, b = work/'seam_a.tif', work/'seam_b.tif'
    predict_raster(img, model, card, mask_path=a)
    predict_raster(img, model, card, mask_path=b, offset=offset)
    with rasterio.open(a) as x, rasterio.open(b) as y: ma, mb = x.read(1), y.read(1)
    diff = ma != mb
    # a seam would show as changed pixels concentrated within a few px of the tile borders of either grid
    band = np.zeros(size, bool)
    for off in (0, offset[0], offset[1]):
        for st in tile_starts(size, 256, 224, off):
            for e in (st, st + 256): band[max(e - 3, 0):max(min(e + 3, size), 0)] = True
    border = band[:, None] | band[None, :]
    border_share_changed = float((diff & border).sum()/max(diff.sum(), 1))
    fig, axs = plt.subplots(1, 2, figsize=(10, 5))
    axs[0].imshow(ma, cmap='gray'); axs[0].set_title('mask (standard grid)')
    axs[1].imshow(diff, cmap='gray_r'); axs[1].set_title(f'changed when the grid shifts {offset} px: {diff.sum()/max(ma.sum(), 1):.3%} of mask px')
    for x in axs: x.axis('off')
    fig.tight_layout(); fig.savefig(HERE/'results'/'inference_seams.png', dpi=80)
    return dict(raster=f'{size}x{size}', model=f"{card['name']}: UNet base 8 depth 3 trained 120 steps on synthetic bright rectangles (final loss {loss:.3f}); threshold 0.5", offset=offset,
                mask_pixels=int(ma.sum()), changed_pixels=int(diff.sum()), changed_fraction_of_mask=float(diff.sum()/max(ma.sum(), 1)),
                changed_fraction_of_raster=float(diff.mean()), border_band_area_share=float(border.mean()),
                changed_pixels_on_tile_borders_share=border_share_changed, figure='bench/results/inference_seams.png')

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tp-size', type=int, default=2048, help='throughput raster size (the issue asks 8192: about 15 min on 2 idle cores, results under throughput_8192)')
    ap.add_argument('--tp-base', type=int, default=32)
    ap.add_argument('--rss-sizes', default='4096,16384')
    ap.add_argument('--rss-base', type=int, default=-1, help='UNet base width for the RSS runs; 0: a small trained UNet (base 8, depth 3); -1: the bright-roof net')
    ap.add_argument('--seam-size', type=int, default=1024)
    ap.add_argument('--parts', default='rss,rss32,seams,throughput')
    ap.add_argument('--rss-child', type=int, default=None)
    ap.add_argument('--work', default=None)
    a = ap.parse_args()
    if a.rss_child: return rss_child(a.rss_child, a.rss_base, a.work)
    work = Path(a.work or tempfile.mkdtemp(prefix='dcd-bench-inf-'))
    (HERE/'results').mkdir(parents=True, exist_ok=True)
    res = json.loads(RES.read_text()) if RES.exists() else {}
    res.update(machine=dict(cpus=os.cpu_count(), load_avg_at_start=os.getloadavg(), bf16=str(autocast_dtype(torch.device('cpu')))))
    run = dict(throughput=lambda: ('throughput' if a.tp_size == 2048 else f'throughput_{a.tp_size}', throughput(work, a.tp_size, a.tp_base)),
               seams=lambda: ('seams', seams(work, a.seam_size, 8)),
               rss=lambda: ('rss', rss(work, [int(s) for s in a.rss_sizes.split(',')], a.rss_base)),
               rss32=lambda: ('rss_base32_4096', rss(work, [4096], 32)))
    for part in a.parts.split(','):
        k, v = run[part](); res[k] = v; RES.write_text(json.dumps(res, indent=1)); print(part, 'done', flush=True)
    if not a.work: shutil.rmtree(work, ignore_errors=True)   # our own scratch folder; a --work folder is the caller's
    res['machine']['load_avg_at_end'] = os.getloadavg()
    RES.write_text(json.dumps(res, indent=1))
    tp, r, s = res.get('throughput_8192', res.get('throughput', {})), res.get('rss', {}), res.get('seams', {})
    print(f"inference: {tp.get('raster', '?')[:9]} ours {tp.get('ours', {}).get('mp_per_s', float('nan')):.3f} MP/s vs naive "
          f"{tp.get('naive', {}).get('mp_per_s', float('nan')):.3f} MP/s = {tp.get('speedup', float('nan')):.2f}x (target 4x), "
          f"{tp.get('compute_bound', {}).get('fraction', float('nan')):.0%} of bf16 matmul; peak RSS ratio {r.get('ratio', float('nan')):.2f} "
          f"(max {r.get('max_peak_mb', float('nan')):.0f} MB); seams {s.get('changed_fraction_of_mask', float('nan')):.3%} of mask px changed")

if __name__ == '__main__': main()
