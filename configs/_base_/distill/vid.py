# VID: variational information distillation on every stage, weight 1
# (RepDistiller).
vid = dict(loss=dict(type='VIDLoss'), inputs='stages', loss_weight=1.0)
