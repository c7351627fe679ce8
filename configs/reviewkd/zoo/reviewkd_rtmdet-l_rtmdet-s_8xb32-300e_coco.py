# ReviewKD on COCO with model-zoo detectors: RTMDet-L -> RTMDet-S.
# Student, data, 300-epoch schedule and runtime are mmdet's own
# rtmdet_s_8xb32-300e_coco (44.5 box AP alone), with its hooks: the EMA
# (averaging the student only, as mmreviewkd.DistillerEMAHook) and the
# stage-2 PipelineSwitchHook. Data goes in data/coco.
# ReviewKD distils the three neck levels (P3..P5; 128 student channels,
# 256 teacher channels); the teacher runs backbone + neck only.
_base_ = ['mmdet::rtmdet/rtmdet_s_8xb32-300e_coco.py']

# Teacher: mmdet model zoo, rtmdet_l_8xb32-300e_coco (51.3 box AP):
# https://download.openmmlab.com/mmdetection/v3.0/rtmdet/rtmdet_l_8xb32-300e_coco/rtmdet_l_8xb32-300e_coco_20220719_112030-5a0be7c4.pth
teacher_ckpt = \
    'checkpoints/rtmdet_l_8xb32-300e_coco_20220719_112030-5a0be7c4.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(cfg_path='mmdet::rtmdet/rtmdet_l_8xb32-300e_coco.py'),
    teacher_ckpt=teacher_ckpt,
    # not published for this pair: the value of the paper's COCO pairs;
    # tune it
    loss_weight=1.0,
    infer_input_shape=(3, 128, 128))
