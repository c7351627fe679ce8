# Faster R-CNN, MobileNetV2 FPN, trained alone: the student baseline of the
# ReviewKD R50 -> MobileNetV2 pair. mmdet's R50-FPN Faster R-CNN model with
# mmdet's MobileNetV2 backbone. out_indices (1, 2, 4, 7) are the last blocks
# at strides 4, 8, 16, 32 (layer2, layer3, layer5 and the final 1x1 conv:
# 24, 32, 96 and 1280 channels), so the FPN gives P2..P6 like a ResNet's.
# BN statistics stay frozen (norm_eval, as detectron2's FrozenBN at batch 2
# per GPU); no stage is frozen (the authors' FREEZE_AT 0).
# Schedule: the ReviewKD detectron2 recipe, see
# configs/_base_/common/ms-180k_coco.py (4 x 2 images, lr 0.01, 180k iters).
# Backbone weights: open-mmlab://mmdet/mobilenet_v2
# (https://download.openmmlab.com/mmdetection/v2.0/third_party/mobilenet_v2_batch256_imagenet-ff34753d.pth),
# fetched by mmengine at init time; pre-fill the torch hub cache when
# offline. Same ImageNet mean/std and RGB order as the ResNet models.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../../_base_/common/ms-180k_coco.py',
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
