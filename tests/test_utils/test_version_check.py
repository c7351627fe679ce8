# Copyright (c) mmreviewkd contributors. All rights reserved.
import subprocess
import sys

import pytest

from mmreviewkd.utils import check_dependency_versions
from mmreviewkd.utils.version_check import (COMPATIBLE_VERSIONS,
                                            OPTIONAL_VERSIONS, _installed,
                                            mmdet_available, require_mmdet)


def fake_versions(**versions):
    base = dict(mmcv='2.1.0', mmengine='0.10.7', mmdet='3.3.0',
                mmpretrain='1.2.0')
    base.update(versions)
    return base.get


def test_installed_stack_passes():
    check_dependency_versions()  # the real, installed versions


def test_fitting_versions_pass():
    check_dependency_versions(fake_versions())


def test_ranges_match_the_requirement_files():
    """requirements/*.txt (what setup.py installs) name the ranges of the
    import-time check, pin nothing and leave torch / torchvision alone."""
    import os.path as osp
    import re
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    reqs = []
    for name in ('runtime.txt', 'mminstall.txt', 'det.txt', 'tests.txt'):
        with open(osp.join(root, 'requirements', name)) as f:
            reqs += [
                line.split('#')[0].strip() for line in f
                if line.split('#')[0].strip()
            ]
    for name, (low, high) in {**COMPATIBLE_VERSIONS,
                              **OPTIONAL_VERSIONS}.items():
        assert f'{name}>={low},<{high}' in reqs, name
    for req in reqs:
        assert '==' not in req, req
        dist = re.match(r'[A-Za-z0-9_.-]+', req).group(0).lower()
        assert dist not in ('torch', 'torchvision', 'ninja'), req


@pytest.mark.parametrize('name,version,range_text', [
    ('mmcv', '2.2.0', 'mmcv>=2.0.0rc4,<2.2.0'),
    ('mmcv', '1.7.1', 'mmcv>=2.0.0rc4,<2.2.0'),
    ('mmengine', '0.9.0', 'mmengine>=0.10.0,<1.0.0'),
    ('mmdet', '2.28.2', 'mmdet>=3.0.0,<3.4.0'),
    ('mmdet', '3.4.0', 'mmdet>=3.0.0,<3.4.0'),
    ('mmpretrain', '2.0.0', 'mmpretrain>=1.0.0,<2.0.0'),
    ('mmpretrain', '0.25.0', 'mmpretrain>=1.0.0,<2.0.0'),
])
def test_out_of_range_version_is_one_clear_line(name, version, range_text):
    with pytest.raises(RuntimeError) as info:
        check_dependency_versions(fake_versions(**{name: version}))
    msg = str(info.value)
    assert '\n' not in msg
    assert range_text in msg and f'{name}=={version}' in msg
    assert 'tools/setup_env.sh' in msg


@pytest.mark.parametrize('name', ['mmcv', 'mmengine', 'mmpretrain'])
def test_missing_required_package_is_named(name):
    with pytest.raises(RuntimeError, match=f'{name} is not installed') as e:
        check_dependency_versions(fake_versions(**{name: None}))
    assert '\n' not in str(e.value)


def test_missing_mmdet_is_fine_until_detection_is_used():
    get = fake_versions(mmdet=None)
    check_dependency_versions(get)  # no error: classification needs no mmdet
    assert mmdet_available(get) is False
    with pytest.raises(RuntimeError) as info:
        require_mmdet(get)
    msg = str(info.value)
    assert msg.startswith('mmreviewkd detection support needs '
                          'mmdet>=3.0.0,<3.4.0, but mmdet is not installed')
    assert '.[det]' in msg and '\n' not in msg


def test_require_mmdet_checks_the_range():
    require_mmdet(fake_versions())
    assert mmdet_available(fake_versions()) is True
    with pytest.raises(RuntimeError, match=r'but mmdet==3\.4\.0 is install'):
        require_mmdet(fake_versions(mmdet='3.4.0'))


def test_mmcv_lite_counts_as_mmcv(monkeypatch):
    from importlib import metadata

    def version(name):
        if name == 'mmcv-lite':
            return '2.1.0'
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, 'version', version)
    assert _installed('mmcv') == '2.1.0'
    assert _installed('mmdet') is None


def test_import_fails_with_the_message():
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


def test_import_fails_with_an_installed_mmdet_out_of_range():
    """An installed mmdet outside its range is the one-line error at import
    (mmengine would import it as soon as an mmdet config is used)."""
    code = (
        'import importlib.metadata as m\n'
        'orig = m.version\n'
        'm.version = lambda n: "2.28.2" if n == "mmdet" else orig(n)\n'
        'import mmreviewkd\n')
    proc = subprocess.run([sys.executable, '-c', code],
                          capture_output=True,
                          text=True)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('RuntimeError: mmreviewkd needs mmdet>=3.0.0,'
                           '<3.4.0, but mmdet==2.28.2 is installed')
