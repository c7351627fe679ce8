# Mask R-CNN, ResNet-18 FPN, trained alone: the student baseline of the
# ReviewKD R101 -> R18 pair (paper: 31.25 mask AP). mmdet's R50-FPN Mask
# R-CNN model with an R18 backbone (FPN inputs 64, 128, 256, 512 channels).
# Schedule: the ReviewKD detectron2 recipe, see
# configs/_base_/common/ms-poly-180k_coco-instance.py (4 x 2 images,
# lr 0.01, 180k iterations).
# Backbone weights: torchvision://resnet18
# (https://download.pytorch.org/models/resnet18-f37072fd.pth), fetched by
# mmengine at init time; pre-fill the torch hub cache when offline.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../../_base_/common/ms-poly-180k_coco-instance.py',
]

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
