# ReviewKD on ImageNet with model-zoo models: ConvNeXt-T -> ResNet18.
# Student, data, schedule and runtime are mmpretrain's own
# resnet18_8xb32_in1k (69.90 top-1 alone); data goes in data/imagenet.
# Stages are discovered and paired by stride (no per-pair settings).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']

# Teacher: mmpretrain model zoo, convnext-tiny_32xb128_in1k (82.14 top-1):
# https://download.openmmlab.com/mmclassification/v0/convnext/convnext-tiny_32xb128_in1k_20221207-998cf3e9.pth
teacher_ckpt = 'checkpoints/convnext-tiny_32xb128_in1k_20221207-998cf3e9.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    # not published for this pair: the paper's ImageNet ResNet34 -> ResNet18
    # value; tune it
    loss_weight=1.0,
    infer_input_shape=(3, 224, 224))
