# ReviewKD on ImageNet with model-zoo models: EfficientNet-B2 -> B0.
# Student, data, schedule and runtime are mmpretrain's own
# efficientnet-b0_8xb32_in1k; data goes in data/imagenet.
# Stages are discovered and paired by stride (no per-pair settings).
_base_ = ['mmpretrain::efficientnet/efficientnet-b0_8xb32_in1k.py']

# Teacher: mmpretrain model zoo, efficientnet-b2_3rdparty_8xb32_in1k (79.64
# top-1; config efficientnet/efficientnet-b2_8xb32_in1k.py):
# https://download.openmmlab.com/mmclassification/v0/efficientnet/efficientnet-b2_3rdparty_8xb32_in1k_20220119-ea374a30.pth
teacher_ckpt = \
    'checkpoints/efficientnet-b2_3rdparty_8xb32_in1k_20220119-ea374a30.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(
        cfg_path='mmpretrain::efficientnet/efficientnet-b2_8xb32_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    # not published for this pair: the paper's ImageNet ResNet34 -> ResNet18
    # value; tune it
    loss_weight=1.0,
    infer_input_shape=(3, 224, 224))
