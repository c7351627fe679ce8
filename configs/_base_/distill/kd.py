# KD (Hinton et al.): KL of the temperature-4 softened logits; RepDistiller's
# CIFAR-100 recipe weighs the student's cross-entropy 0.1 and KD 0.9.
kd = dict(loss=dict(type='KDLoss', tau=4.0), inputs='logits', loss_weight=0.9)
kd_task_loss_weight = 0.1
