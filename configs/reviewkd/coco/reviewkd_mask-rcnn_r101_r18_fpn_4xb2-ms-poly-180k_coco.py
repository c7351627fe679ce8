# ReviewKD on COCO: Mask R-CNN R101-FPN -> R18-FPN (spec sections 6-8).
# Paper: student R18 31.25 -> 33.62 mask AP with ReviewKD.
# Schedule: the authors' detectron2 recipe reproduced exactly (spec section 7):
# 4 GPUs x 2 images, SGD lr 0.01, 180k iterations, x0.1 at 120k and 160k,
# multi-scale train 640-800, see configs/_base_/common/. Not mmdet's 2x: the
# image budget equals mmdet's 1x. Other GPU counts: --auto-scale-lr.
# The student alone: the first _base_ (configs/baselines/coco/); the exported
# student (work_dir/student_final.pth) loads into it.
# Teacher: only its backbone + FPN run during training (no_grad, eval mode);
# ReviewKD distils all FPN levels P2..P6 (256 channels, ABF mid 256).
_base_ = [
    '../../baselines/coco/mask-rcnn_r18_fpn_4xb2-ms-poly-180k_coco.py',
    '../../_base_/reviewkd_runtime.py',
]

# Teacher: mmdet model zoo, 42.7 box / 38.5 mask AP; config
# mmdet::mask_rcnn/mask-rcnn_r101_fpn_ms-poly-3x_coco.py.
# Download the checkpoint into checkpoints/ (nothing is fetched at runtime):
# https://download.openmmlab.com/mmdetection/v2.0/mask_rcnn/mask_rcnn_r101_fpn_mstrain-poly_3x_coco/mask_rcnn_r101_fpn_mstrain-poly_3x_coco_20210524_200244-5675c317.pth
teacher_ckpt = 'checkpoints/mask_rcnn_r101_fpn_mstrain-poly_3x_coco_20210524_200244-5675c317.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmdet::mask_rcnn/mask-rcnn_r101_fpn_ms-poly-3x_coco.py'),
    teacher_ckpt=teacher_ckpt,
    connector=dict(type='ABFConnector', mid_channels=256),
    distill_loss=dict(type='HCLLoss'),
    loss_weight=1.5,
    warmup_epochs=0,  # no warm-up in detection
    infer_input_shape=(3, 128, 128))
