# ReviewKD on COCO: RetinaNet R101-FPN -> R50-FPN.
# Paper: no RetinaNet AP published (lambda 1.0 from the authors).
# Schedule: the authors' detectron2 recipe,
# configs/_base_/common/ms-180k_coco.py (batch 4 x 2, 180k iterations; the
# image budget of mmdet's 1x), with lr 0.005 (RetinaNet's half LR, as in the
# authors' ReviewKD-RT50-RT101 config).
# The student alone is mmdet's own R50 baseline,
# mmdet::retinanet/retinanet_r50_fpn_1x_coco.py; the exported student loads
# into it.
# ReviewKD distils all FPN levels P3..P7 (256 channels, so ABF mid 256); the
# teacher runs backbone + FPN only (no_grad, eval mode).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../../_base_/common/ms-180k_coco.py',
]

# Teacher: mmdet model zoo, 41.0 box AP, mmdet's best R101 RetinaNet; config
# mmdet::retinanet/retinanet_r101_fpn_ms-640-800-3x_coco.py.
# Download the checkpoint into checkpoints/ (nothing is fetched at runtime):
# https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_mstrain_3x_coco/retinanet_r101_fpn_mstrain_3x_coco_20210720_214650-7ee888e0.pth
teacher_ckpt = 'checkpoints/retinanet_r101_fpn_mstrain_3x_coco_20210720_214650-7ee888e0.pth'

# no warm-up in detection (the default)
model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmdet::retinanet/retinanet_r101_fpn_ms-640-800-3x_coco.py'),
    teacher_ckpt=teacher_ckpt,
    loss_weight=1.0,
    infer_input_shape=(3, 128, 128))

optim_wrapper = dict(optimizer=dict(lr=0.005))
