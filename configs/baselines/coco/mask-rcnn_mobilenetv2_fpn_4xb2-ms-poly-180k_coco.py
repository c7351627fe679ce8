# Mask R-CNN, MobileNetV2 FPN, trained alone: the student baseline of the
# ReviewKD R50 -> MobileNetV2 pair (paper: 28.37 mask AP). mmdet's R50-FPN
# Mask R-CNN model with mmdet's MobileNetV2 backbone; out_indices
# (1, 2, 4, 7) give strides 4, 8, 16, 32 with 24, 32, 96, 1280 channels
# (see faster-rcnn_mobilenetv2_fpn_4xb2-ms-180k_coco.py).
# Schedule: the ReviewKD detectron2 recipe, see
# configs/_base_/common/ms-poly-180k_coco-instance.py.
# Backbone weights: open-mmlab://mmdet/mobilenet_v2
# (https://download.openmmlab.com/mmdetection/v2.0/third_party/mobilenet_v2_batch256_imagenet-ff34753d.pth).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../../_base_/common/ms-poly-180k_coco-instance.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='MobileNetV2',
        out_indices=(1, 2, 4, 7),
        frozen_stages=-1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint='open-mmlab://mmdet/mobilenet_v2')),
    neck=dict(in_channels=[24, 32, 96, 1280]))
