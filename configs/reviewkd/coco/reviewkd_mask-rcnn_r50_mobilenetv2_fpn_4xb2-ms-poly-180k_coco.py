# ReviewKD on COCO: Mask R-CNN R50-FPN -> MobileNetV2-FPN.
# Paper: student MobileNetV2 28.37 -> 31.56 mask AP with ReviewKD.
# Schedule: the authors' detectron2 recipe,
# configs/_base_/common/ms-poly-180k_coco-instance.py (batch 4 x 2, lr 0.01,
# 180k iterations; the image budget of mmdet's 1x).
# The student alone: the first _base_ (configs/baselines/coco/); the exported
# student (work_dir/student_final.pth) loads into it.
# ReviewKD distils all FPN levels P2..P6 (256 channels, so ABF mid 256); the
# teacher runs backbone + FPN only (no_grad, eval mode).
_base_ = [
    '../../baselines/coco/mask-rcnn_mobilenetv2_fpn_4xb2-ms-poly-180k_coco.py',
]

# Teacher: mmdet model zoo, 40.9 box / 37.1 mask AP; config
# mmdet::mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py.
# Download the checkpoint into checkpoints/ (nothing is fetched at runtime):
# https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r50_fpn_mstrain-poly_3x_coco/mask_rcnn_r50_fpn_mstrain-poly_3x_coco_20210524_201154-21b550bb.pth
teacher_ckpt = 'checkpoints/mask_rcnn_r50_fpn_mstrain-poly_3x_coco_20210524_201154-21b550bb.pth'

# no warm-up in detection (the default)
model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmdet::mask_rcnn/mask-rcnn_r50_fpn_ms-poly-3x_coco.py'),
    teacher_ckpt=teacher_ckpt,
    loss_weight=1.0,
    infer_input_shape=(3, 128, 128))
