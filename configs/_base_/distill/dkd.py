# DKD (Zhao et al., CVPR 2022): alpha 1 (target class), beta 8 (non-target
# classes), temperature 4, linear warm-up over 20 epochs as its authors'
# CIFAR-100 recipe; the student's cross-entropy keeps weight 1.
dkd = dict(
    loss=dict(type='DKDLoss', alpha=1.0, beta=8.0, tau=4.0),
    inputs='logits',
    loss_weight=1.0,
    warmup_epochs=20)
