"Tests of datacenter_detector.baseline: the Clay v1.5 encoder's keys and loading, frozen training steps, geoembed parity."
import copy, json, logging, math, warnings
from pathlib import Path
import numpy as np, pytest, torch
import lightning as L
from datacenter_detector.data import ChipDataModule, make_toy_chips
from datacenter_detector.baseline import (CLAY_V15, CLAY_NAIP_NORM, GEO_NORM, ClayEncoder, ClaySegmentor, GeoSegmentor,
    AerialResNet18, BaselineModule, load_clay_encoder, load_geoembed, geoembed_npz, clay_keys_fixture, state_shapes,
    n_trainable, clay_metadata)

FIXTURE = Path(__file__).parent/'data'/'clay_v15_encoder_keys.json'
TINY = dict(dim=32, depth=2, heads=2, dim_head=16, mlp_ratio=2., patch_size=8, wave_dim=16, n_latent=8)
logging.getLogger('lightning.pytorch').setLevel(logging.ERROR)

@pytest.fixture(scope='module')
def chips(tmp_path_factory):
    return make_toy_chips(tmp_path_factory.mktemp('toy'), n=dict(train=6, val=3, test=3), size=32, seed=0)

def fit_steps(net, chips, norm, steps=2, loss='weighted_ce', loss_kw=dict(weights=(1., 5.))):
    "Train `net` for `steps` optimizer steps through the real DataModule, SegModule losses and a Lightning Trainer."
    torch.manual_seed(0)
    dm = ChipDataModule(*chips, bs=3, norm=norm, seed=0)
    mod = BaselineModule(net, loss, loss_kw, lr=1e-2)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        L.Trainer(accelerator='cpu', max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False).fit(mod, dm)
    return mod

def changed(before:dict, after:dict)->list:
    return sorted(k for k, v in before.items() if not torch.equal(v, after[k]))

# --- Clay v1.5 ---------------------------------------------------------------------------------------------------

def test_clay_keys_match_reference_fixture():
    ref = {k: tuple(v) for k, v in json.loads(FIXTURE.read_text()).items()}
    assert len(ref) == 265
    with torch.device('meta'): enc = ClayEncoder(**CLAY_V15)
    ours = state_shapes(enc)
    assert set(ours) - set(ref) == set() and set(ref) - set(ours) == set()
    assert {k: s for k, s in ours.items() if ref[k] != s} == {}
    assert sum(math.prod(s) for s in ref.values()) == 311_442_944  # Clay v1.5's 311 M encoder parameters
    assert clay_keys_fixture(FIXTURE) == ref
    # spot checks of the real config: patch 8 -> conv weights for 8*8*1024; 24 layers of width 1024, MLP 4096
    assert ref['patch_embedding.weight_generator.fc_weight.weight'] == (8*8*1024, 128)
    assert ref['transformer.layers.23.1.net.1.weight'] == (4096, 1024)
    assert ref['transformer.layers.0.0.to_qkv.weight'] == (3*16*64, 1024)

def test_clay_loads_checkpoint_by_key(tmp_path):
    src = ClayEncoder(**TINY)
    sd = {f'model.encoder.{k}': v for k, v in src.state_dict().items()}
    sd |= {'model.decoder.mask_patch': torch.zeros(32), 'model.teacher.x': torch.zeros(2)}  # other parts are ignored
    torch.save(dict(state_dict=sd, epoch=3), tmp_path/'tiny.ckpt')
    enc = load_clay_encoder(tmp_path/'tiny.ckpt', TINY)
    assert n_trainable(enc) == 0 and not enc.training
    for k, v in src.state_dict().items(): assert torch.equal(v, enc.state_dict()[k]), k
    x, (t, ll) = torch.randn(2, 4, 16, 16), clay_metadata(-77.5, 39.0, '2022-07-01T15:00')
    args = (t.expand(2, -1), ll.expand(2, -1), 0.6, torch.tensor([0.65, 0.56, 0.48, 0.842]))
    with torch.no_grad(): assert torch.allclose(src.eval()(x, *args), enc(x, *args), atol=1e-6)
    with torch.no_grad(): assert enc(x, *args).shape == (2, 4, 32)

def test_clay_missing_checkpoint_error(tmp_path):
    p = tmp_path/'clay-v1.5.ckpt'
    with pytest.raises(FileNotFoundError) as e: load_clay_encoder(p)
    msg = str(e.value)
    assert str(p) in msg and 'model.encoder' in msg and 'made-with-clay/Clay' in msg and 'v1.5/clay-v1.5.ckpt' in msg

def test_clay_corrupt_and_truncated_checkpoint_errors(tmp_path):
    bad = tmp_path/'garbage.ckpt'; bad.write_bytes(b'\x00garbage' * 100)
    full = tmp_path/'full.ckpt'
    torch.save(dict(state_dict={f'model.encoder.{k}': v for k, v in ClayEncoder(**TINY).state_dict().items()}), full)
    cut = tmp_path/'truncated.ckpt'; cut.write_bytes(full.read_bytes()[:full.stat().st_size//2])
    for p in (bad, cut):
        with pytest.raises(ValueError) as e: load_clay_encoder(p, TINY)
        msg = str(e.value)
        assert str(p) in msg and 'corrupt' in msg and 'made-with-clay/Clay' in msg

def test_clay_wrong_checkpoint_errors(tmp_path):
    other = tmp_path/'unet.ckpt'; torch.save(dict(state_dict={'model.downs.0.weight': torch.zeros(3)}), other)
    with pytest.raises(ValueError, match="no 'model.encoder"): load_clay_encoder(other)
    tiny = tmp_path/'tiny.ckpt'
    torch.save(dict(state_dict={f'model.encoder.{k}': v for k, v in ClayEncoder(**TINY).state_dict().items()}), tiny)
    with pytest.raises(ValueError) as e: load_clay_encoder(tiny)  # a tiny encoder is not the v1.5 config
    assert 'do not match Clay v1.5' in str(e.value) and str(tiny) in str(e.value) and 'made-with-clay/Clay' in str(e.value)

def test_tiny_clay_frozen_training_step(chips):
    seg = ClaySegmentor(ClayEncoder(**TINY), hidden=16, c_out=4)
    assert n_trainable(seg.encoder) == 0 and n_trainable(seg.head) > 0
    enc0, head0 = copy.deepcopy(seg.encoder.state_dict()), copy.deepcopy(seg.head.state_dict())
    mod = fit_steps(seg, chips, CLAY_NAIP_NORM)
    assert mod.global_step == 2
    assert changed(enc0, seg.encoder.state_dict()) == []          # frozen: bit-identical
    moved = changed(head0, seg.head.state_dict())
    assert 'conv1.weight' in moved and 'conv_out.weight' in moved   # the head did train
    assert all(p.grad is None for p in seg.encoder.parameters())

# --- geoembed ------------------------------------------------------------------------------------------------------

def test_geoembed_loader_matches_geoembed_forward():
    geoembed = pytest.importorskip('geoembed')
    ref = geoembed.Model('v3', device='cpu')
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 128, 128)).astype(np.float32)
    theirs = ref._forward_raw(x)
    m = load_geoembed()
    with torch.no_grad(): ours = m.embed(torch.from_numpy(x)).numpy()
    assert ours.shape == theirs.shape == (2, 256)
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours*theirs).sum(1).min() > 0.99999
    # and a random-weight ResNet-18 of the same shape does not match (the test can fail)
    with torch.no_grad(): rnd = AerialResNet18().eval().embed(torch.from_numpy(x)).numpy()
    assert np.abs(rnd - theirs).max() > 1e-2

def test_geoembed_features_and_freeze():
    m = load_geoembed()
    assert n_trainable(m) == 0 and not m.training
    with torch.no_grad(): fs = m(torch.zeros(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in fs] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    assert geoembed_npz().name == 'v3.npz'

def test_geoembed_corrupt_npz(tmp_path):
    p = tmp_path/'v3.npz'; p.write_bytes(b'PK\x03\x04 broken')
    with pytest.raises(ValueError, match='corrupt') as e: load_geoembed(p)
    assert str(p) in str(e.value)
    with pytest.raises(FileNotFoundError): load_geoembed(tmp_path/'none.npz')

@pytest.mark.parametrize('nir', ['adapter', 'drop'])
def test_frozen_geoembed_unchanged_after_training_step(chips, nir):
    seg = GeoSegmentor(load_geoembed(), nir=nir, hidden=16, c_out=4)
    bb0, head0 = copy.deepcopy(seg.backbone.state_dict()), copy.deepcopy(seg.head.state_dict())
    ad0 = None if seg.adapter is None else seg.adapter.weight.detach().clone()
    fit_steps(seg, chips, GEO_NORM)
    assert changed(bb0, seg.backbone.state_dict()) == []   # weights and BatchNorm running statistics untouched
    assert changed(head0, seg.head.state_dict())
    if nir == 'adapter': assert not torch.equal(ad0, seg.adapter.weight)  # the NIR adapter learns
    else: assert seg.adapter is None

def test_partly_unfrozen_trains_only_last_stage(chips):
    seg = GeoSegmentor(load_geoembed(), unfreeze=('layer4',), decoder='unet')
    trainable = {n.split('.')[0] for n, p in seg.backbone.named_parameters() if p.requires_grad}
    assert trainable == {'layer4'}
    bb0 = copy.deepcopy(seg.backbone.state_dict())
    fit_steps(seg, chips, GEO_NORM)
    moved = changed(bb0, seg.backbone.state_dict())
    assert moved and all(k.startswith('layer4.') for k in moved)
    assert 'layer4.1.conv2.weight' in moved

def test_random_control_trains_frozen_and_reloads_as_itself(chips, tmp_path):
    "The control row: a frozen ResNet-18 with random weights; saved and reloaded, it is still the random one, not geoembed."
    from datacenter_detector.baseline import VARIANTS, run_variant
    from datacenter_detector.unet import load_model
    spec = VARIANTS['random_frozen_ce1:1']
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        row = run_variant('random_frozen_ce1:1', spec, *chips, epochs=1, bs=3, hidden=16, c_out=4, out_dir=tmp_path/'rand')
    assert row['status'] == 'ran' and row['trainable_params'] < row['total_params'] - 11_000_000   # the backbone stayed frozen
    net, card = load_model(tmp_path/'rand', 'cpu')
    geo = load_geoembed().state_dict()
    assert not torch.equal(net.backbone.state_dict()['conv1.weight'], geo['conv1.weight'])
    assert card['training']['variant']['backbone'] == 'random'
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad(): assert torch.isfinite(net.eval()(x)).all()
