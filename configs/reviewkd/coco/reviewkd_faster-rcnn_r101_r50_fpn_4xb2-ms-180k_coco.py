# ReviewKD on COCO: Faster R-CNN R101-FPN -> R50-FPN.
# Paper: student R50 37.93 -> 40.36 box AP with ReviewKD.
# Schedule: the authors' detectron2 recipe,
# configs/_base_/common/ms-180k_coco.py (batch 4 x 2, lr 0.01, 180k iterations;
# the image budget of mmdet's 1x).
# The student alone is mmdet's own R50 baseline,
# mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py; the exported student loads
# into it.
# ReviewKD distils all FPN levels P2..P6 (256 channels, so ABF mid 256); the
# teacher runs backbone + FPN only (no_grad, eval mode).
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../../_base_/common/ms-180k_coco.py',
]

# Teacher: mmdet model zoo, 41.8 box AP; config
# mmdet::faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py.
# Download the checkpoint into checkpoints/ (nothing is fetched at runtime):
# https://download.openmmlab.com/mmdetection/v2.0/faster_rcnn/faster_rcnn_r101_fpn_mstrain_3x_coco/faster_rcnn_r101_fpn_mstrain_3x_coco_20210524_110822-4d4d2ca8.pth
teacher_ckpt = 'checkpoints/faster_rcnn_r101_fpn_mstrain_3x_coco_20210524_110822-4d4d2ca8.pth'

# no warm-up in detection (the default)
model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmdet::faster_rcnn/faster-rcnn_r101_fpn_ms-3x_coco.py'),
    teacher_ckpt=teacher_ckpt,
    loss_weight=1.0,
    infer_input_shape=(3, 128, 128))
