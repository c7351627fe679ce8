# Copyright (c) mmreviewkd contributors. All rights reserved.
from .cifar_mobilenet_v2 import CifarMobileNetV2
from .cifar_resnet import CifarResNet
from .cifar_shufflenet_v1 import CifarShuffleNetV1
from .cifar_shufflenet_v2 import CifarShuffleNetV2
from .cifar_vgg import CifarVGG
from .cifar_wrn import CifarWRN
from .mobilenet_v1 import MobileNetV1

__all__ = [
    'CifarResNet', 'CifarWRN', 'CifarVGG', 'CifarMobileNetV2',
    'CifarShuffleNetV1', 'CifarShuffleNetV2', 'MobileNetV1'
]
