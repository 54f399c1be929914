"Packaging: an installed wheel (not the clone) must carry the real label file and import cleanly."
import subprocess, sys, zipfile, json

def test_wheel_ships_labels(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), '.'], check=True)
    whl, = tmp_path.glob('datacenter_detector-*.whl')
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        assert 'datacenter_detector/core.py' in names
        gj = json.loads(z.read('datacenter_detector/assets/datacenters.geojson'))
    assert len(gj['features']) == 190

def test_import_outside_repo(tmp_path):
    out = subprocess.run([sys.executable, '-c', 'import datacenter_detector.core as c; print(c.LABELS.exists())'],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == 'True'
