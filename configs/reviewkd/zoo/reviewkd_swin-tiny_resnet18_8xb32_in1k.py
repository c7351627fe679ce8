# ReviewKD on ImageNet with model-zoo models: Swin-T -> ResNet18.
# Student, data, schedule and runtime are mmpretrain's own
# resnet18_8xb32_in1k (69.90 top-1 alone); data goes in data/imagenet.
# The teacher's stage tokens are read as feature maps, discovered and paired
# by stride with the student's stages (no per-pair settings).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']

# Teacher: mmpretrain model zoo, swin-tiny_16xb64_in1k (81.18 top-1):
# https://download.openmmlab.com/mmclassification/v0/swin-transformer/swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth
teacher_ckpt = 'checkpoints/' \
    'swin_tiny_224_b16x64_300e_imagenet_20210616_090925-66df6be6.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    # not published for this pair: the paper's ImageNet ResNet34 -> ResNet18
    # value; tune it
    loss_weight=1.0,
    infer_input_shape=(3, 224, 224))
