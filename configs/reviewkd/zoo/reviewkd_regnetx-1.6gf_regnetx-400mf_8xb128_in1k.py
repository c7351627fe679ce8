# ReviewKD on ImageNet with model-zoo models: RegNetX-1.6GF -> 400MF.
# Student, data, schedule and runtime (PreciseBNHook included) are
# mmpretrain's own regnetx-400mf_8xb128_in1k; data goes in data/imagenet.
# Both read BGR input as the pycls checkpoints do.
# Stages are discovered and paired by stride (no per-pair settings).
_base_ = ['mmpretrain::regnet/regnetx-400mf_8xb128_in1k.py']

# Teacher: mmpretrain model zoo, regnetx-1.6gf_8xb128_in1k (76.84 top-1):
# https://download.openmmlab.com/mmclassification/v0/regnet/regnetx-1.6gf_8xb128_in1k_20211213-d1b89758.pth
teacher_ckpt = 'checkpoints/regnetx-1.6gf_8xb128_in1k_20211213-d1b89758.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(cfg_path='mmpretrain::regnet/regnetx-1.6gf_8xb128_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    # not published for this pair: the paper's ImageNet ResNet34 -> ResNet18
    # value; tune it
    loss_weight=1.0,
    infer_input_shape=(3, 224, 224))
