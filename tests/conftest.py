"Shared pytest set-up."
import os, tempfile, pytest

@pytest.fixture(autouse=True, scope='session')
def scratch_under_pytest(tmp_path_factory):
    "Every temporary folder the tests make (their CLI subprocesses and papermill kernels too) goes under pytest's own tmp root, which pytest prunes: a notebook run that fails on purpose cannot leave its scratch folder in /tmp."
    d = tmp_path_factory.mktemp('scratch')
    old_env, old_dir = os.environ.get('TMPDIR'), tempfile.tempdir
    os.environ['TMPDIR'], tempfile.tempdir = str(d), str(d)
    yield d
    tempfile.tempdir = old_dir
    if old_env is None: os.environ.pop('TMPDIR', None)
    else: os.environ['TMPDIR'] = old_env
