# Copyright (c) mmreviewkd contributors. All rights reserved.
import subprocess
import sys

import pytest

from mmreviewkd.utils import check_dependency_versions


def fake_versions(**versions):
    base = dict(mmcv='2.1.0', mmengine='0.10.7', mmdet='3.3.0',
                mmpretrain='1.2.0')
    base.update(versions)
    return base.get


def test_installed_stack_passes():
    check_dependency_versions()  # the real, installed versions


def test_fitting_versions_pass():
    check_dependency_versions(fake_versions())


@pytest.mark.parametrize('name,version,range_text', [
    ('mmcv', '2.2.0', 'mmcv>=2.0.0rc4,<2.2.0'),
    ('mmcv', '1.7.1', 'mmcv>=2.0.0rc4,<2.2.0'),
    ('mmengine', '0.9.0', 'mmengine>=0.10.0,<1.0.0'),
    ('mmdet', '2.28.2', 'mmdet>=3.0.0,<3.4.0'),
    ('mmpretrain', '2.0.0', 'mmpretrain>=1.0.0,<2.0.0'),
])
def test_out_of_range_version_is_one_clear_line(name, version, range_text):
    with pytest.raises(RuntimeError) as info:
        check_dependency_versions(fake_versions(**{name: version}))
    msg = str(info.value)
    assert '\n' not in msg
    assert range_text in msg and f'{name}=={version}' in msg
    assert 'tools/setup_env.sh' in msg


def test_missing_package_is_named():
    with pytest.raises(RuntimeError, match='mmdet is not installed'):
        check_dependency_versions(fake_versions(mmdet=None))


def test_import_fails_with_the_message(tmp_path):
    """Importing mmreviewkd with a wrong mmcv raises the one-line error."""
    code = (
        'import importlib.metadata as m\n'
        'orig = m.version\n'
        'm.version = lambda n: "2.2.0" if n == "mmcv" else orig(n)\n'
        'import mmreviewkd\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('RuntimeError: mmreviewkd needs mmcv>=2.0.0rc4,'
                           '<2.2.0, but mmcv==2.2.0 is installed')
