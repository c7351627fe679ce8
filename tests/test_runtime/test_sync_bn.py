# Copyright (c) mmreviewkd contributors. All rights reserved.
"""SyncBN for the student and the connector, switched on from a config:
MMEngine's ``sync_bn='torch'`` (the whole distiller, converted by the runner
in distributed GPU runs) or ``ABFConnector(norm_cfg=dict(type='SyncBN'))``.
Converting BN modules must not detach the feature taps (WRN pre-activation
features are BN outputs). PyTorch's SyncBatchNorm needs GPUs: a distributed
CPU run of such a config sets ``sync_bn=None`` and a BN connector."""
import json
import socket
import subprocess
import sys
import textwrap

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.model import convert_sync_batchnorm, revert_sync_batchnorm
from mmengine.registry import DefaultScope
from mmpretrain.structures import DataSample

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import ROOT, cpu_ddp_env
from mmreviewkd.models import ReviewKDDistiller
from mmreviewkd.models.connectors import ABFConnector


def classifier(backbone, in_channels):
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=backbone,
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(
            type='mmpretrain.LinearClsHead',
            num_classes=10,
            in_channels=in_channels,
            loss=dict(type='mmpretrain.CrossEntropyLoss')))


def wrn_distiller(**kwargs):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return ReviewKDDistiller(
            student=classifier(
                dict(type='mmreviewkd.CifarResNet', depth=8), 64),
            teacher=classifier(
                dict(type='mmreviewkd.CifarWRN', depth=10, widen_factor=1),
                64),
            data_preprocessor=dict(
                type='mmpretrain.ClsDataPreprocessor', num_classes=10),
            teacher_feats=dict(preact=True),  # BN outputs of the WRN
            **kwargs)


def count(module, kind):
    return sum(isinstance(m, kind) for m in module.modules())


def loss_of(model, inputs, samples):
    MessageHub.get_current_instance().update_info('epoch', 1)
    try:
        return model.loss(inputs, samples)
    finally:
        MessageHub.get_current_instance().update_info('epoch', 0)


def test_bn_conversion_keeps_features_flowing():
    model = wrn_distiller()
    assert any(name.endswith('bn1') for name, _ in model.teacher_tap.points)
    model.train()
    inputs = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    expected = loss_of(model, inputs, samples)['loss_hcl']

    # what the runner does with cfg.sync_bn='torch' (distributed) ...
    model = convert_sync_batchnorm(model, 'torch')
    model.train()
    for part in (model.student, model.connector, model.teacher):
        assert count(part, nn.SyncBatchNorm) > 0
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert not any(m.training for m in model.teacher.modules())
    # (SyncBN runs like BN outside a process group)
    losses = loss_of(model, inputs, samples)
    torch.testing.assert_close(losses['loss_hcl'], expected)
    losses['loss_hcl'].backward()
    assert model.connector.abfs[0].norm1.weight.grad is not None

    # ... and without distribution: SyncBN reverted to BN
    model = revert_sync_batchnorm(model)
    assert count(model, nn.SyncBatchNorm) == 0
    torch.testing.assert_close(
        loss_of(model, inputs, samples)['loss_hcl'], expected)


def test_connector_sync_bn_from_its_norm_cfg():
    connector = ABFConnector([16, 32], [16, 32], norm_cfg=dict(type='SyncBN'))
    assert count(connector, nn.SyncBatchNorm) == 4
    assert count(connector, nn.BatchNorm2d) == 0
    model = wrn_distiller(
        connector=dict(type='ABFConnector', norm_cfg=dict(type='SyncBN')))
    assert count(model.connector, nn.SyncBatchNorm) == 8


RUNNER_SCRIPT = textwrap.dedent('''
    import json, sys
    import torch
    import torch.nn as nn
    from mmengine.config import Config
    from mmengine.runner import Runner
    from mmreviewkd.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    def load(name, overrides=None):
        cfg = Config.fromfile(sys.argv[1])
        cfg.merge_from_dict(overrides or {})
        cfg.work_dir = sys.argv[2]
        cfg.launcher = 'pytorch'
        cfg.experiment_name = name
        return cfg

    # the config as written: the runner converts BN to SyncBN (what runs on
    # GPUs), and PyTorch's DDP refuses SyncBN in a CPU module
    try:
        Runner.from_cfg(load('as_written'))
        refused = ''
    except ValueError as e:
        refused = str(e)
    # on CPU: the same config with BatchNorm
    runner = Runner.from_cfg(load('cpu', {
        'sync_bn': None, 'model.connector.norm_cfg.type': 'BN'}))
    model = runner.model.module
    def kinds(module):
        return dict(
            sync=sum(isinstance(m, nn.SyncBatchNorm)
                     for m in module.modules()),
            bn=sum(isinstance(m, nn.modules.batchnorm._BatchNorm)
                   and not isinstance(m, nn.SyncBatchNorm)
                   for m in module.modules()))
    # one real DDP step
    batch = next(iter(runner.train_dataloader))
    optim = runner.build_optim_wrapper(runner.optim_wrapper)
    losses = runner.model.train_step(batch, optim)
    print('RESULT ' + json.dumps(dict(
        refused=refused, wrapper=type(runner.model).__name__,
        student=kinds(model.student), connector=kinds(model.connector),
        loss=float(losses['loss']))))
''')


def test_sync_bn_config_in_a_cpu_distributed_run(tmp_path):
    """``sync_bn = 'torch'`` plus an ``ABFConnector`` built with SyncBN, run
    by MMEngine's Runner in a real (one-process, gloo) distributed
    environment without CUDA: the runner converts the model to SyncBN (the
    GPU path), which PyTorch's DDP only accepts on GPUs; with
    ``sync_bn=None`` and a BN connector (the CPU overrides) the same config
    makes a working DDP step with BatchNorm."""
    data = make_cifar100(
        str(tmp_path / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=8,
        num_test=8)
    config = tmp_path / 'sync_bn.py'
    config.write_text(
        tiny_distill_config(data, cpu_ddp=True) + "\nsync_bn = 'torch'\n"
        "model.update(connector=dict(type='ABFConnector', "
        "norm_cfg=dict(type='SyncBN')))\n")
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    env = cpu_ddp_env(
        dict(
            RANK='0',
            WORLD_SIZE='1',
            LOCAL_RANK='0',
            MASTER_ADDR='127.0.0.1',
            MASTER_PORT=str(port)))
    proc = subprocess.run([
        sys.executable, '-c', RUNNER_SCRIPT,
        str(config),
        str(tmp_path / 'work')
    ],
                          capture_output=True,
                          text=True,
                          cwd=ROOT,
                          env=env,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
    result = json.loads(line[-1][len('RESULT '):])
    assert 'SyncBatchNorm' in result['refused'], result
    assert result['wrapper'] == 'MMDistributedDataParallel'
    for part in ('student', 'connector'):
        assert result[part]['sync'] == 0 and result[part]['bn'] > 0, result
    assert result['loss'] > 0
