"Training: fast_dev_run, overfitting one batch, export/reload, NIR dropout, bad inputs, and the dcd_train CLI end to end."
import json, shutil, subprocess, sys, warnings
from pathlib import Path
import numpy as np, pytest, rasterio, torch
import lightning as L
from datacenter_detector.core import write_raster, seed_everything
from datacenter_detector.data import (IGNORE, Augment, ChipDataModule, ChipDataset, band_stats, make_toy_chips,
                                      read_pair, read_index)
from datacenter_detector.unet import UNet, make_card, save_model, load_model, normalize
from datacenter_detector.train import SegModule, make_loss, train

warnings.filterwarnings('ignore', '.*does not have many workers.*')
torch.set_num_threads(1)  # the CI machine has 2 shared cores: 2 spinning threads per process is far slower under load
ENV = {**__import__('os').environ, 'OMP_NUM_THREADS': '1'}

@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    return make_toy_chips(tmp_path_factory.mktemp('toy'), n=dict(train=6, val=3, test=3), size=32)

def _trainer(**kw): return L.Trainer(accelerator='cpu', logger=False, enable_progress_bar=False, enable_model_summary=False,
                                     enable_checkpointing=False, **kw)

def test_fast_dev_run(toy):
    seed_everything(0)
    dm = ChipDataModule(*toy, bs=2); dm.setup('fit')
    mod = SegModule(make_card(UNet(base=4), dm.norm), lr=1e-3)
    tr = _trainer(fast_dev_run=True); tr.fit(mod, dm)
    m = tr.callback_metrics
    assert {'train_loss', 'val_loss', 'val_iou', 'val_dice', 'val_precision', 'val_recall'} <= set(m)
    assert all(torch.isfinite(v) for v in m.values()) and m['train_loss'] > 0

@pytest.mark.parametrize('loss', ['bce_dice', 'weighted_ce', 'focal'])
def test_overfit_one_batch(toy, loss):
    "Each loss can drive one fixed batch (ignore pixels included) to a small loss."
    seed_everything(0)
    ds = ChipDataset(*toy, 'train', norm=band_stats(toy[0]))
    x, y = map(torch.stack, zip(*[ds[i] for i in range(4)]))
    assert (y == 1).any() and (y == IGNORE).any()
    model, lf = UNet(base=8), make_loss(loss)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    with torch.no_grad(): start = lf(model(x), y).item()
    for _ in range(150):
        opt.zero_grad(); l = lf(model(x), y); l.backward(); opt.step()
    model.eval()
    with torch.no_grad(): end = lf(model(x), y).item(); pred = model(x) > 0
    assert end < 0.25*start, (start, end)   # measured: 0.12 (bce_dice), 0.12 (weighted_ce), 0.02 (focal)
    v = y != IGNORE
    assert (pred[v] == (y[v] == 1)).float().mean() > 0.98   # measured: 1.0

def test_export_reload_identical_logits(toy, tmp_path):
    seed_everything(0)
    dm = ChipDataModule(*toy, bs=3); dm.setup('fit')
    model = UNet(base=4)
    opt = torch.optim.SGD(model.parameters(), 0.1)
    for x, y in dm.train_dataloader():  # a few steps so BatchNorm running stats are not the defaults
        opt.zero_grad(); make_loss()(model(x), y).backward(); opt.step()
    model.eval(); card = make_card(model, dm.norm, threshold=0.37)
    save_model(model, card, tmp_path/'m')
    m2, c2 = load_model(tmp_path/'m', 'cpu')
    x = next(iter(dm.val_dataloader()))[0]
    with torch.no_grad(): assert torch.equal(model(x), m2(x))
    assert c2['threshold'] == 0.37 and c2['norm']['mean'] == card['norm']['mean'] and c2['bands'] == ['red', 'green', 'blue', 'nir']
    assert not any(p.suffix in ('.pkl', '.pt', '.pth') for p in (tmp_path/'m').iterdir())

def test_nir_dropout_finite(toy):
    seed_everything(0)
    st = band_stats(toy[0])
    ds = ChipDataset(*toy, 'train', norm=st, tfms=Augment(nir_p=1.0))
    model = UNet(base=4).eval()
    for i in range(len(ds)):
        x, y = ds[i]
        valid = y[0] != IGNORE
        assert torch.isfinite(x).all()
        assert torch.allclose(x[3][valid], torch.zeros(())), 'NIR dropped to its train mean = 0 after normalisation'
        assert x[:3][:, valid].abs().sum() > 0
        with torch.no_grad(): assert torch.isfinite(model(x[None])).all()

def test_bad_grids(toy, tmp_path):
    chips, masks = toy; r = read_index(chips).iloc[0]
    with rasterio.open(masks/r.path) as m:
        write_raster(tmp_path/f'{r.chip_id}.tif', m.read(1), m.transform @ m.transform.translation(0, 2), m.crs)
    with pytest.raises(ValueError, match='is not on the grid of chip.*dcd_masks'):
        read_pair(chips/r.path, tmp_path/f'{r.chip_id}.tif')
    with rasterio.open(masks/r.path) as m:
        write_raster(tmp_path/'crs.tif', m.read(1), m.transform, 'EPSG:32617')
    with pytest.raises(ValueError, match='is not on the grid'): read_pair(chips/r.path, tmp_path/'crs.tif')

def test_wrong_band_count(tmp_path, toy):
    rgb_chips, rgb_masks = make_toy_chips(tmp_path/'rgb', n=dict(train=3, val=3), size=32, bands=3)
    with pytest.raises(ValueError, match='Wrong band count for the model'):
        ChipDataModule(rgb_chips, rgb_masks).setup('fit')      # a 4-band model on RGB chips
    dm = ChipDataModule(rgb_chips, rgb_masks, bands=('red', 'green', 'blue'), bs=2); dm.setup('fit')
    x, _ = next(iter(dm.train_dataloader())); assert x.shape[1] == 3
    card = make_card(UNet(base=4), band_stats(toy[0]))
    with pytest.raises(ValueError, match='Wrong band count for the model'): normalize(torch.zeros(1, 3, 32, 32), card)
    with pytest.raises(ValueError, match='Check the band count'): UNet(base=4)(torch.zeros(1, 3, 32, 32))

@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_nan_inf_inputs(toy, tmp_path, bad):
    chips, _ = toy; r = read_index(chips).iloc[0]
    with rasterio.open(chips/r.path) as s: a = s.read().astype(np.float32); a[1, 3, 4] = bad; write_raster(tmp_path/'x.tif', a, s.transform, s.crs, nodata=0)
    with pytest.raises(ValueError, match=f'{tmp_path/"x.tif"}.*NaN or inf'): read_pair(tmp_path/'x.tif', None)
    card = make_card(UNet(base=4), band_stats(chips))
    x = torch.full((1, 4, 8, 8), 100.); x[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match='NaN/inf'): normalize(x, card)

def test_empty_split(tmp_path):
    chips, masks = make_toy_chips(tmp_path/'e', n=dict(train=3, test=3), size=32)
    with pytest.raises(ValueError, match="'val' split of .*index.geojson is empty"): ChipDataModule(chips, masks).setup('fit')
    c2, m2 = make_toy_chips(tmp_path/'e2', n=dict(val=3, test=3), size=32)
    with pytest.raises(ValueError, match="'train' split"): ChipDataModule(c2, m2).setup('fit')

def _cli(*args, cwd):
    return subprocess.run([shutil.which('dcd_train') or str(Path(sys.executable).parent/'dcd_train'), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=900, env=ENV)

def test_cli_end_to_end(toy, tmp_path):
    chips, masks = toy; out = tmp_path/'run1'
    r = _cli('--chips-dir', chips, '--masks-dir', masks, '--batch-size', 4, '--epochs', 1, '--lr', 0.001, '--base', 4,
             '--output-dir', out, '--device', 'cpu', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'wrote' in r.stdout and 'val F1' in r.stdout
    for f in ('model.safetensors', 'model.json', 'learning_curve.png', 'checkpoints/last.ckpt', 'logs/version_0/metrics.csv'):
        assert (out/f).is_file(), f
    model, card = load_model(out, 'cpu')
    assert card['arch'] == dict(in_ch=4, base=4, depth=4) and card['name'] == 'unet4' and 0 < card['threshold'] < 1
    assert card['metrics']['lr'] == 0.001 and card['metrics']['epochs_run'] == 1 and 'test' in card['metrics']
    assert card['training_data']['chips']['train'] == dict(positive=2, hard_negative=2, background=2)
    assert card['training_data']['sources'] == ['toy']
    # the checkpoint is for resuming only, but loads safely too, with the same weights
    mc, _ = load_model(out/'checkpoints'/'last.ckpt', 'cpu')
    x = torch.randn(1, 4, 32, 32)
    with torch.no_grad(): assert mc(x).shape == model(x).shape

def test_cli_rgb_and_bad_dir(toy, tmp_path):
    chips, masks = toy
    r = _cli('--chips-dir', chips, '--masks-dir', masks, '--batch-size', 4, '--epochs', 1, '--lr', 0.001, '--base', 4,
             '--bands', 'red,green,blue', '--output-dir', tmp_path/'rgb', '--device', 'cpu', '--no-amp', cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    card = json.loads((tmp_path/'rgb'/'model.json').read_text())
    assert card['name'] == 'unet_rgb' and card['bands'] == ['red', 'green', 'blue'] and card['arch']['in_ch'] == 3
    assert card['metrics']['precision'] == '32-true'
    r = _cli('--chips-dir', tmp_path/'nope', '--masks-dir', masks, '--output-dir', tmp_path/'x', cwd=tmp_path)
    assert r.returncode != 0 and 'No chip index at' in r.stderr and 'dcd_chips' in r.stderr
    assert not (tmp_path/'x'/'model.json').exists()

def test_shipped_models_load():
    "The shipped models load with one call, fit the size budget, and say what they were trained on."
    from datacenter_detector.core import MODELS, BAND_NAMES, RGB
    m0, c0 = load_model(device='cpu')
    assert c0['name'] == 'unet4'
    for name, bands in (('unet4', BAND_NAMES), ('unet_rgb', RGB)):
        d = MODELS/name
        assert (d/'model.safetensors').stat().st_size <= 16e6
        m, c = load_model(d, 'cpu')
        assert c['bands'] == list(bands) and c['arch']['in_ch'] == len(bands) and 0 < c['threshold'] < 1
        assert c['training_data']['sources'] == ['synthetic'] and {'val', 'test'} <= set(c['metrics'])
        x = torch.randint(1, 256, (2, len(bands), 64, 64), dtype=torch.uint8)
        with torch.no_grad(): p = torch.sigmoid(m(normalize(x, c)))
        assert p.shape == (2, 1, 64, 64) and torch.isfinite(p).all()
