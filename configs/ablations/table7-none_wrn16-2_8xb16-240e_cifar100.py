# Table 7, row 1: no distillation (the student's baseline, 74.3 in the paper).
_base_ = ['../baselines/cifar100/wrn16-2_8xb16-240e_cifar100.py']
