# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Classification works with mmcv/mmcv-lite + mmengine + mmpretrain and NO
mmdet: ``import mmreviewkd``, registering its modules and one distillation
training step, in a subprocess where mmdet cannot be imported and has no
distribution metadata."""
import subprocess
import sys
import textwrap

MARKER = 'NO-MMDET-CLASSIFICATION-OK'

CHILD = textwrap.dedent('''
    import importlib.abc
    import importlib.metadata as metadata
    import math
    import sys


    class HideMmdet(importlib.abc.MetaPathFinder):
        """Makes ``import mmdet`` (and mmdet.*) fail as if not installed."""

        def find_spec(self, name, path=None, target=None):
            if name == 'mmdet' or name.startswith('mmdet.'):
                raise ModuleNotFoundError(f"No module named {name!r}",
                                          name=name)
            return None


    sys.meta_path.insert(0, HideMmdet())
    _version = metadata.version


    def version(name):
        if name == 'mmdet':
            raise metadata.PackageNotFoundError(name)
        return _version(name)


    metadata.version = version
    try:
        import mmdet  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError('mmdet is still importable')

    import torch

    import mmreviewkd  # the version check passes without mmdet
    from mmreviewkd.utils import register_all_modules
    from mmreviewkd.utils.version_check import mmdet_available, require_mmdet

    assert not mmdet_available()
    try:
        require_mmdet()
    except RuntimeError as e:
        assert 'mmdet is not installed' in str(e), e
    else:
        raise AssertionError('require_mmdet() passed without mmdet')

    register_all_modules(init_default_scope=False)
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample


    def classifier(depth):
        return dict(
            type='ImageClassifier',
            backbone=dict(type='mmreviewkd.CifarResNet', depth=depth),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=10,
                in_channels=64,
                loss=dict(type='CrossEntropyLoss')))


    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(
            dict(
                type='mmreviewkd.ReviewKDDistiller',
                student=classifier(8),
                teacher=classifier(14),
                teacher_ckpt=None,
                student_feats=dict(preact=False),
                teacher_feats=dict(preact=True),
                infer_input_shape=(3, 32, 32),
                data_preprocessor=dict(
                    type='ClsDataPreprocessor',
                    num_classes=10,
                    mean=[0., 0., 0.],
                    std=[1., 1., 1.])))
    assert type(model).__name__ == 'ReviewKDDistiller'
    model.train()
    inputs = torch.randn(4, 3, 32, 32)
    samples = [DataSample().set_gt_label(i) for i in range(4)]
    losses = model.loss(inputs, samples)
    hcl = losses['loss_hcl']
    assert math.isfinite(hcl.item()) and hcl.item() > 0, hcl
    total, _ = model.parse_losses(losses)  # what train_step back-propagates
    total.backward()
    student = [p for p in model.student.parameters() if p.requires_grad]
    assert student and all(p.grad is not None for p in student)
    assert any(p.grad.abs().sum() > 0 for p in student)
    assert all(p.grad is None for p in model.teacher.parameters())
    leaked = sorted(m for m in sys.modules
                    if m == 'mmdet' or m.startswith('mmdet.'))
    assert not leaked, leaked
    print(MARKER, f'loss_hcl={hcl.item():.4f}')
''').replace('MARKER', repr(MARKER))


def test_classification_without_mmdet():
    proc = subprocess.run([sys.executable, '-c', CHILD],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert MARKER in proc.stdout, proc.stdout + proc.stderr
