# ReviewKD on COCO: RetinaNet R101-FPN -> R50-FPN (spec sections 6-8).
# Paper: no RetinaNet AP published (lambda 1.0 from the authors).
# Schedule: the authors' detectron2 recipe reproduced exactly (spec section 7):
# 4 GPUs x 2 images, lr 0.005 (RetinaNet's half LR, as in the authors'
# ReviewKD-RT50-RT101 config), 180k iterations, x0.1 at 120k and 160k,
# multi-scale train 640-800, see configs/_base_/common/. Not mmdet's 2x: the
# image budget equals mmdet's 1x. Other GPU counts: --auto-scale-lr.
# The student alone is mmdet's own R50 baseline,
# mmdet::retinanet/retinanet_r50_fpn_1x_coco.py (same model, same image
# budget, single-scale); the exported student loads into it.
# Teacher: only its backbone + FPN run during training (no_grad, eval mode);
# ReviewKD distils all FPN levels P3..P7 (256 channels, ABF mid 256).
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    '../../_base_/common/ms-180k_coco.py',
    '../../_base_/reviewkd_runtime.py',
]

# Teacher: mmdet model zoo, 41.0 box AP, mmdet's best R101 RetinaNet; config
# mmdet::retinanet/retinanet_r101_fpn_ms-640-800-3x_coco.py.
# Download the checkpoint into checkpoints/ (nothing is fetched at runtime):
# https://download.openmmlab.com/mmdetection/v2.0/retinanet/retinanet_r101_fpn_mstrain_3x_coco/retinanet_r101_fpn_mstrain_3x_coco_20210720_214650-7ee888e0.pth
teacher_ckpt = 'checkpoints/retinanet_r101_fpn_mstrain_3x_coco_20210720_214650-7ee888e0.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmdet::retinanet/retinanet_r101_fpn_ms-640-800-3x_coco.py'),
    teacher_ckpt=teacher_ckpt,
    connector=dict(type='ABFConnector', mid_channels=256),
    distill_loss=dict(type='HCLLoss'),
    loss_weight=1.0,
    warmup_epochs=0,  # no warm-up in detection
    infer_input_shape=(3, 128, 128))

optim_wrapper = dict(optimizer=dict(lr=0.005))
