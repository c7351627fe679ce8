# ReviewKD on ImageNet with model-zoo models: ResNet50 -> MobileNetV2.
# Student, data, schedule and runtime are mmpretrain's own
# mobilenet-v2_8xb32_in1k (71.86 top-1 alone); data goes in data/imagenet.
# Stages are discovered and paired by stride (no per-pair settings).
_base_ = ['mmpretrain::mobilenet_v2/mobilenet-v2_8xb32_in1k.py']

# Teacher: mmpretrain model zoo, resnet50_8xb32_in1k (76.55 top-1):
# https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth
teacher_ckpt = 'checkpoints/resnet50_8xb32_in1k_20210831-ea4938fc.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(cfg_path='mmpretrain::resnet/resnet50_8xb32_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    # not published for this pair: lambda of the paper's ResNet50 ->
    # MobileNet pair; tune it
    loss_weight=8.0,
    infer_input_shape=(3, 224, 224))
