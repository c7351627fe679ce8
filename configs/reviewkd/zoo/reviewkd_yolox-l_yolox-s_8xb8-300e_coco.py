# ReviewKD on COCO with model-zoo detectors: YOLOX-L -> YOLOX-S.
# Student, data, 300-epoch schedule and runtime are mmdet's own
# yolox_s_8xb8-300e_coco (40.5 box AP alone), with its hooks: the mode
# switch of the last 15 epochs (no mosaic / mixup, L1 loss in the student's
# head), SyncNormHook and the EMA (averaging the student only, as
# mmreviewkd.DistillerEMAHook). Data goes in data/coco.
# ReviewKD distils the three neck levels (P3..P5; 128 student channels,
# 256 teacher channels); the teacher runs backbone + neck only.
_base_ = ['mmdet::yolox/yolox_s_8xb8-300e_coco.py']

# Teacher: mmdet model zoo, yolox_l_8x8_300e_coco (49.4 box AP; config
# yolox/yolox_l_8xb8-300e_coco.py):
# https://download.openmmlab.com/mmdetection/v2.0/yolox/yolox_l_8x8_300e_coco/yolox_l_8x8_300e_coco_20211126_140236-d3bd2b23.pth
teacher_ckpt = 'checkpoints/yolox_l_8x8_300e_coco_20211126_140236-d3bd2b23.pth'

model = dict(
    _delete_=True,
    type='mmreviewkd.ReviewKDDistiller',
    student={{_base_.model}},
    teacher=dict(cfg_path='mmdet::yolox/yolox_l_8xb8-300e_coco.py'),
    teacher_ckpt=teacher_ckpt,
    # not published for this pair: the value of the paper's COCO pairs;
    # tune it
    loss_weight=1.0,
    infer_input_shape=(3, 128, 128))
