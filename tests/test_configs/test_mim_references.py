# Copyright (c) mmreviewkd contributors. All rights reserved.
"""``mmreviewkd::`` config references, like ``mmdet::`` ones: from a config
outside the repository (``_base_``), as a teacher's ``cfg_path`` and on the
command line, through ``load_config`` and plain ``Config.fromfile`` (after
``import mmreviewkd``), for the editable layout (``mmreviewkd/.mim/configs``
a symlink), a wheel's (a copy) and a source checkout without ``.mim``."""
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.registry import DefaultScope

from mmreviewkd.models.distillers import ReviewKDDistiller
from mmreviewkd.models.distillers.review_kd import build_model_from_ref
from mmreviewkd.utils.config_check import (load_config, package_config_root,
                                           resolve_config_path)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAIR = 'reviewkd/cifar100/reviewkd_resnet56_resnet20_8xb16-240e_cifar100.py'
BASELINE = 'baselines/cifar100/resnet20_8xb16-240e_cifar100.py'

USER_CONFIG = f"""
_base_ = ['mmreviewkd::{PAIR}']
model = dict(loss_weight=2.0)
"""


def user_config(tmp_path):
    path = tmp_path / 'elsewhere' / 'my_reviewkd.py'
    path.parent.mkdir()
    path.write_text(USER_CONFIG)
    return str(path)


def test_import_registers_the_scope():
    assert MODULE2PACKAGE['mmreviewkd'] == 'mmreviewkd'
    root = package_config_root()
    assert osp.isfile(osp.join(root, PAIR))
    assert osp.samefile(osp.join(root, PAIR), osp.join(ROOT, 'configs', PAIR))


@pytest.mark.parametrize('loader', ['load_config', 'Config.fromfile'])
def test_a_config_outside_the_repository_inherits_by_reference(
        tmp_path, loader):
    path = user_config(tmp_path)
    cfg = load_config(path) if loader == 'load_config' else \
        Config.fromfile(path)
    assert cfg.model.type == 'mmreviewkd.ReviewKDDistiller'
    assert cfg.model.loss_weight == 2.0  # the user's override
    assert cfg.model.warmup_epochs == 20  # the shipped pair's
    assert cfg.train_cfg.max_epochs == 240  # the student baseline's
    assert cfg.default_scope == 'mmpretrain'
    # no "_scope_='mmreviewkd'" forced on the base: types resolve in the
    # scope the shipped config declares, as with a relative path
    assert '_scope_' not in cfg.model
    assert '_scope_' not in cfg.model.student
    if loader == 'load_config':  # prepared like every ReviewKD config
        assert any('StudentExportHook' in h['type'] for h in cfg.custom_hooks)


def test_reference_as_teacher_and_on_the_command_line():
    ref = f'mmreviewkd::{BASELINE}'
    assert resolve_config_path(ref) == (osp.join(package_config_root(),
                                                 BASELINE), 'mmreviewkd')
    teacher = build_model_from_ref(dict(cfg_path=ref), 'teacher')
    assert type(teacher.backbone).__name__ == 'CifarResNet'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ReviewKDDistiller(
            student=dict(cfg_path=ref),
            teacher=dict(cfg_path=ref),
            infer_input_shape=(3, 32, 32))
    assert model.connector.out_channels == model.connector.in_channels
    cfg = load_config(f'mmreviewkd::{PAIR}')
    assert cfg.model.loss_weight == 0.6


def test_missing_reference_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such config in'):
        load_config('mmreviewkd::reviewkd/nope.py')
    path = tmp_path / 'bad.py'
    path.write_text("_base_ = ['mmreviewkd::reviewkd/nope.py']\n")
    with pytest.raises(FileNotFoundError, match='nope.py'):
        load_config(str(path))


def test_wheel_and_source_layouts(tmp_path):
    # a wheel: mmreviewkd/.mim/configs is a copy inside site-packages
    package = tmp_path / 'site-packages' / 'mmreviewkd'
    copied = package / '.mim' / 'configs' / 'reviewkd' / 'cifar100'
    copied.mkdir(parents=True)
    shutil.copy(osp.join(ROOT, 'configs', PAIR), copied)
    assert package_config_root(str(package)) == str(package / '.mim' /
                                                    'configs')
    # a source checkout that was never installed: configs/ next to it
    checkout = tmp_path / 'checkout'
    (checkout / 'mmreviewkd').mkdir(parents=True)
    assert package_config_root(str(checkout / 'mmreviewkd')) == str(checkout /
                                                                    'configs')


def test_plain_python_needs_only_the_import(tmp_path):
    """A fresh interpreter outside the repository: ``import mmreviewkd``,
    then MMEngine's own ``Config.fromfile``."""
    path = user_config(tmp_path)
    code = ('import mmreviewkd\n'
            'from mmengine.config import Config\n'
            f'cfg = Config.fromfile({path!r})\n'
            'print(cfg.model.type, cfg.model.loss_weight)\n')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('PYTHONPATH', None)
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=str(tmp_path),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == \
        'mmreviewkd.ReviewKDDistiller 2.0'
