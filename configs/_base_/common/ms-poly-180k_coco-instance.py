# COCO instance segmentation with the schedule of ms-180k_coco.py. What
# changes, as from mmdet's ms-90k_coco.py to its ms-poly-90k_coco-instance.py:
# LoadAnnotations also loads the polygon masks (poly2mask=False) in training
# and evaluation, and the metric is bbox + segm AP.
_base_ = './ms-180k_coco.py'

train_pipeline = _base_.train_pipeline
train_pipeline[1].update(with_mask=True, poly2mask=False)
test_pipeline = _base_.test_pipeline
test_pipeline[2].update(with_mask=True, poly2mask=False)
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
