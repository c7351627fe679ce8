# ReviewKD (ABF + HCL) plus KD on the logits.
# Teacher, student, data and schedule: the pair's ReviewKD config.
_base_ = [
    '../../reviewkd/cifar100/reviewkd_vgg13_vgg8_8xb16-240e_cifar100.py'
]

# cross-entropy and KD both at weight 1 (temperature 4), as RepDistiller
# combines a feature method with KD
model = dict(
    distill_terms=dict(
        kd=dict(loss=dict(type='KDLoss', tau=4.0), inputs='logits')))
