# Copyright (c) mmreviewkd contributors. All rights reserved.
"""ReviewKDDistiller on mmdet detectors: teacher normalisation, teacher
heads, student export into the plain mmdet config (+ DetInferencer), the
tiny COCO generator and the benchmark's detection branch."""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from helpers import make_coco
from mmreviewkd.models.distillers.teacher_input import TeacherRenormalizer
from mmreviewkd.models.utils import export_student
from mmreviewkd.registry import MODELS
from mmreviewkd.utils.config_check import load_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STUDENT_CFG = osp.join(
    ROOT, 'configs/baselines/coco/'
    'faster-rcnn_r18_fpn_4xb2-ms-180k_coco.py')
DISTILL_CFG = osp.join(
    ROOT, 'configs/reviewkd/coco/'
    'reviewkd_faster-rcnn_r101_r18_fpn_4xb2-ms-180k_coco.py')
# a caffe-style teacher: BGR input, caffe mean, std 1 (mmdet's *-caffe)
CAFFE_PREPROCESSOR = dict(
    mean=[103.530, 116.280, 123.675], std=[1.0, 1.0, 1.0], bgr_to_rgb=False)
TINY_TRAIN_SCALES = [(160, 96), (160, 128)]
TINY_TEST_SCALE = (160, 128)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    return make_coco(
        str(tmp_path_factory.mktemp('coco_det')), num_train=2, num_val=2)


def shrink(cfg):
    """Tiny image scales in the config's train and test pipelines."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for t in cfg[loader].dataset.pipeline:
            if t.type == 'RandomChoiceResize':
                t.scales = TINY_TRAIN_SCALES
            elif t.type == 'Resize':
                t.scale = TINY_TEST_SCALE
            elif t.type == 'RandomFlip':
                t.prob = 0.
    return cfg


def raw_batch(cfg, data_root, split='train', n=2):
    """``n`` samples of tiny COCO through the config's pipeline, collated
    (uint8 images of different sizes, not yet preprocessed)."""
    from mmdet.registry import DATASETS
    ds_cfg = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    ds_cfg.data_root = data_root + '/'
    if split != 'train':
        ds_cfg.ann_file = 'annotations/instances_val2017.json'
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(ds_cfg)
        return pseudo_collate([dataset[i] for i in range(n)])


def build(model_cfg, scope='mmdet'):
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(model_cfg)


class InputRecorder:
    """Records the tensor given to ``module`` on each call."""

    def __init__(self, module):
        self.inputs = []
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.inputs.append(args[0].detach().clone())

    def remove(self):
        self.handle.remove()


# ----------------------------------------------------------- normalisation
def test_renormalizer_maps_student_normalisation_to_teacher_and_pads():
    torch.manual_seed(0)
    s_mean, s_std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    t_mean, t_std = [103.53, 116.28, 123.675], [1., 1., 1.]
    rgb = torch.rand(2, 3, 8, 10) * 255  # the student converts BGR -> RGB
    x_s = (rgb - torch.tensor(s_mean).view(
        1, 3, 1, 1)) / torch.tensor(s_std).view(1, 3, 1, 1)
    x_s[1, :, 6:, :] = 0.  # sample 1 is padded: image 6 x 7 of 8 x 10
    x_s[1, :, :, 7:] = 0.
    renorm = TeacherRenormalizer(
        s_mean, s_std, t_mean, t_std, flip_channels=True, pad_value=0.)

    class Sample:

        def __init__(self, h, w):
            self.metainfo = dict(img_shape=(h, w))

    out = renorm(x_s, [Sample(8, 10), Sample(6, 7)])
    bgr = rgb.flip(1)
    expected = (bgr - torch.tensor(t_mean).view(
        1, 3, 1, 1)) / torch.tensor(t_std).view(1, 3, 1, 1)
    torch.testing.assert_close(out[0], expected[0], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(
        out[1, :, :6, :7], expected[1, :, :6, :7], rtol=1e-5, atol=1e-3)
    assert out[1, :, 6:, :].abs().sum() == 0  # teacher's pad value
    assert out[1, :, :, 7:].abs().sum() == 0
    assert not list(renorm.state_dict())  # checkpoints do not change


def test_renormalizer_only_when_the_teacher_normalises_differently():
    from mmdet.models.data_preprocessors import DetDataPreprocessor
    imagenet = dict(
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True)
    student = DetDataPreprocessor(**imagenet)
    assert TeacherRenormalizer.between(student,
                                       DetDataPreprocessor(**imagenet)) is None
    # a teacher without normalisation shares the student's input
    assert TeacherRenormalizer.between(student, DetDataPreprocessor()) is None
    for change in (dict(bgr_to_rgb=False), dict(std=[1., 1., 1.]),
                   dict(mean=[0., 0., 0.])):
        teacher = DetDataPreprocessor(**{**imagenet, **change})
        assert isinstance(
            TeacherRenormalizer.between(student, teacher),
            TeacherRenormalizer), change


@pytest.fixture(scope='module')
def caffe_teacher_distiller():
    """R18 student (ImageNet mean/std, RGB) with a caffe-style R50 teacher
    (BGR, caffe mean, std 1)."""
    student = load_config(STUDENT_CFG).model
    student.backbone.init_cfg = None
    model = build(
        dict(
            type='mmreviewkd.ReviewKDDistiller',
            student=student,
            teacher=dict(
                cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                data_preprocessor=CAFFE_PREPROCESSOR),
            loss_weight=1.2,
            infer_input_shape=(3, 64, 96)))
    return model


def test_teacher_gets_its_own_normalisation_of_the_same_padded_batch(
        caffe_teacher_distiller, coco):
    model = caffe_teacher_distiller
    assert isinstance(model.teacher_renorm, TeacherRenormalizer)
    assert model.teacher_renorm.flip_channels
    cfg = shrink(load_config(STUDENT_CFG))
    raw = raw_batch(cfg, coco['data_root'])
    shapes = [tuple(s.metainfo['img_shape']) for s in raw['data_samples']]
    assert len(set(shapes)) == 2  # different sizes -> a padded batch
    expected = model.teacher.data_preprocessor(copy.deepcopy(raw),
                                               True)['inputs']
    data = model.data_preprocessor(copy.deepcopy(raw), True)
    assert data['inputs'].shape == expected.shape  # same padded size
    model.train()
    recorder = InputRecorder(model.teacher.backbone)
    try:
        losses = model.loss(**data)
    finally:
        recorder.remove()
    assert len(recorder.inputs) == 1
    torch.testing.assert_close(
        recorder.inputs[0], expected, rtol=1e-5, atol=2e-3)
    assert losses['loss_hcl'].item() > 0


def test_teacher_predict_uses_the_teacher_normalisation(
        caffe_teacher_distiller, coco):
    model = caffe_teacher_distiller
    cfg = shrink(load_config(STUDENT_CFG))
    raw = raw_batch(cfg, coco['data_root'], split='test', n=1)
    expected = model.teacher.data_preprocessor(copy.deepcopy(raw),
                                               False)['inputs']
    model.eval()
    recorder = InputRecorder(model.teacher.backbone)
    try:
        preds = model.teacher_predict(copy.deepcopy(raw))
    finally:
        recorder.remove()
    assert len(preds) == 1 and 'pred_instances' in preds[0]
    torch.testing.assert_close(recorder.inputs[0], expected)


def test_teacher_input_student_feeds_the_student_batch(coco):
    student = load_config(STUDENT_CFG).model
    model = build(
        dict(
            type='mmreviewkd.ReviewKDDistiller',
            student=student,
            teacher=dict(
                cfg_path='mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py',
                data_preprocessor=CAFFE_PREPROCESSOR),
            teacher_input='student',
            infer_input_shape=(3, 64, 64)))
    assert model.teacher_renorm is None
    raw = raw_batch(shrink(load_config(STUDENT_CFG)), coco['data_root'])
    data = model.data_preprocessor(raw, True)
    recorder = InputRecorder(model.teacher.backbone)
    try:
        model.loss(**data)
    finally:
        recorder.remove()
    torch.testing.assert_close(recorder.inputs[0], data['inputs'])
    with pytest.raises(ValueError, match='teacher_input must be'):
        build(
            dict(
                type='mmreviewkd.ReviewKDDistiller',
                student=student,
                teacher=student,
                teacher_input='teacher'))


def test_teacher_head_hooks_do_fire_when_the_teacher_predicts(
        caffe_teacher_distiller, coco):
    """Positive control for the config tests, which assert that no teacher
    module outside backbone and neck runs during loss()."""
    model = caffe_teacher_distiller
    fired = []
    handles = [
        getattr(model.teacher, name).register_forward_hook(
            lambda m, a, o, name=name: fired.append(name))
        for name in ('rpn_head', )
    ] + [
        model.teacher.roi_head.bbox_head.register_forward_hook(
            lambda m, a, o: fired.append('roi_head.bbox_head'))
    ]
    raw = raw_batch(shrink(load_config(STUDENT_CFG)), coco['data_root'])
    try:
        model.train()
        model.loss(**model.data_preprocessor(copy.deepcopy(raw), True))
        assert fired == []
        model.eval()
        model.teacher_predict(copy.deepcopy(raw))
    finally:
        for h in handles:
            h.remove()
    assert set(fired) == {'rpn_head', 'roi_head.bbox_head'}


# ------------------------------------------------------------------ export
def _instances(sample):
    inst = sample.pred_instances
    return inst.bboxes, inst.scores, inst.labels


def test_exported_student_loads_into_plain_config_and_predicts_the_same(
        coco, tmp_path):
    from mmdet.apis import DetInferencer

    cfg = shrink(load_config(DISTILL_CFG))
    cfg.model.teacher_ckpt = None
    cfg.model.student.test_cfg.rcnn.score_thr = 0.  # untrained: keep boxes
    distiller = build(cfg.model)
    with torch.no_grad():  # move away from any default initialisation
        gen = torch.Generator().manual_seed(0)
        for p in distiller.student.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 1e-3)
    distiller.eval()
    raw = raw_batch(cfg, coco['data_root'], split='test', n=2)
    with torch.no_grad():
        ref = distiller(
            **distiller.data_preprocessor(copy.deepcopy(raw), False),
            mode='predict')

    dataset_meta = dict(classes=tuple(f'c{i}' for i in range(80)))
    exported = export_student(
        dict(state_dict=distiller.state_dict()),
        meta=dict(dataset_meta=dataset_meta))
    keys = list(exported['state_dict'])
    assert not any(
        k.startswith(('teacher.', 'connector.', 'student.')) for k in keys)
    ckpt_path = str(tmp_path / 'student.pth')
    torch.save(exported, ckpt_path)

    plain_cfg = shrink(load_config(STUDENT_CFG))
    plain_cfg.model.backbone.init_cfg = None
    plain_cfg.model.test_cfg.rcnn.score_thr = 0.
    plain = build(plain_cfg.model)
    plain.load_state_dict(exported['state_dict'], strict=True)
    plain.eval()
    with torch.no_grad():
        out = plain(
            **plain.data_preprocessor(copy.deepcopy(raw), False),
            mode='predict')
    assert len(out) == len(ref) == 2
    for a, b in zip(ref, out):
        assert len(a.pred_instances) > 0
        for x, y in zip(_instances(a), _instances(b)):
            torch.testing.assert_close(x, y)

    # the same file through mmdet's own inference API
    inferencer = DetInferencer(
        model=plain_cfg, weights=ckpt_path, device='cpu', show_progress=False)
    assert inferencer.model.dataset_meta['classes'] == dataset_meta['classes']
    img_path = raw['data_samples'][0].img_path
    result = inferencer(img_path, no_save_vis=True, return_datasamples=True)
    pred = result['predictions'][0]
    # one image instead of a batch of two: other conv blocking, so allow
    # float-rounding differences (1e-4 px on boxes, 1e-5 relative)
    for x, y in zip(_instances(ref[0]), _instances(pred)):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-4)


# ------------------------------------------------------------ tiny COCO
def test_make_coco_writes_real_coco_files(tmp_path):
    from PIL import Image
    from pycocotools.coco import COCO
    out = make_coco(str(tmp_path / 'c'), num_train=3, num_val=2, ext='png')
    assert out['data_root'] == str(tmp_path / 'c')
    api = COCO(out['train_ann'])
    assert len(api.getImgIds()) == 3
    assert len(api.getCatIds()) == 80 and 90 in api.getCatIds()
    for img in api.loadImgs(api.getImgIds()):
        path = osp.join(out['data_root'], 'train2017', img['file_name'])
        with Image.open(path) as im:
            assert im.size == (img['width'], img['height'])
        anns = api.loadAnns(api.getAnnIds(imgIds=img['id']))
        assert anns
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert w > 0 and h > 0 and x + w <= img['width']
            mask = api.annToMask(ann)  # polygons decode
            assert mask.shape == (img['height'], img['width'])
            assert mask.sum() > 0 and ann['area'] > 0
    with open(out['val_ann']) as f:
        val = json.load(f)
    assert len(val['images']) == 2
    ids = [a['id'] for a in val['annotations']]
    assert min(ids) > max(a['id'] for a in api.dataset['annotations'])
    with pytest.raises(ValueError, match='>= 64'):
        make_coco(str(tmp_path / 'bad'), sizes=[(32, 80)])


# ------------------------------------------------------------- benchmark
def test_benchmark_runs_on_a_detection_config(capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'benchmark_distill',
        osp.join(ROOT, 'tools', 'analysis', 'benchmark_distill.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ratio = bench.main([
        DISTILL_CFG, '--batch-size', '1', '--input-size', '64', '96',
        '--iters', '1', '--warmup', '1', '--threads',
        str(torch.get_num_threads()), '--device', 'cpu'
    ])
    out = capsys.readouterr().out
    assert 'batch 1 x 3 x 64 x 96' in out
    assert 'ratio c / (a + b) = ' in out
    assert np.isfinite(ratio) and ratio > 0
