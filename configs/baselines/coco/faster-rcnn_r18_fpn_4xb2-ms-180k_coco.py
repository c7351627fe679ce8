# Faster R-CNN, ResNet-18 FPN, trained alone: the student baseline of the
# ReviewKD R101 -> R18 pair (paper: 33.26 box AP). mmdet ships no R18
# Faster R-CNN for this schedule, so it is mmdet's R50-FPN model with an
# R18 backbone (FPN inputs 64, 128, 256, 512 channels).
# Schedule: the ReviewKD detectron2 recipe, see
# configs/_base_/common/ms-180k_coco.py (4 x 2 images, lr 0.01, 180k iters).
# Backbone weights: torchvision ImageNet ResNet-18, fetched by mmengine at
# init time from torchvision://resnet18
# (https://download.pytorch.org/models/resnet18-f37072fd.pth); put it in the
# torch hub cache beforehand on machines without internet.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    '../../_base_/common/ms-180k_coco.py',
]

model = dict(
    backbone=dict(
        depth=18,
        init_cfg=dict(type='Pretrained',
                      checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[64, 128, 256, 512]))
