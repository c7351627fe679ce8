# ReviewKD on ImageNet: ResNet50 -> MobileNet (V1; often mislabelled V2).
# Paper: MobileNet 68.87 -> 72.56 top-1.
#
# Student data, schedule (100 epochs, lr 0.1, wd 1e-4, x0.1 at 30/60/90,
# batch 8 x 32 = 256) and runtime come from our MobileNetV1 baseline, which
# inherits mmpretrain's ImageNet bases. Data goes in data/imagenet.
_base_ = ['../../baselines/imagenet/mobilenetv1_8xb32-100e_in1k.py']

# The mmpretrain model-zoo teacher (76.55 top-1), downloaded by the user:
# https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth
teacher_ckpt = 'checkpoints/resnet50_8xb32_in1k_20210831-ea4938fc.pth'

# no warm-up on ImageNet
model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(cfg_path='mmpretrain::resnet/resnet50_8xb32_in1k.py'),
    teacher_ckpt=teacher_ckpt,
    # student 128, 256, 512, 1024, 1024 -> teacher 256, 512, 1024, 2048,
    # 2048; ABF mid 256 as in the authors' ImageNet code (default: 512)
    connector=dict(type='ABFConnector', mid_channels=256),
    loss_weight=8.0,
    # the authors' MobileNet student is read pre-ReLU (BN outputs), the
    # ResNet50 teacher post-ReLU (the default)
    student_feats=dict(preact=True),
    infer_input_shape=(3, 224, 224))
