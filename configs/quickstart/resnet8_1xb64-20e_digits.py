# Quickstart student baseline: the CIFAR resnet8 trained alone on digits.
_base_ = ['./resnet32_1xb64-20e_digits.py']
model = dict(backbone=dict(depth=8))
