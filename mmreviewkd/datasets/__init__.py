# Copyright (c) mmreviewkd contributors. All rights reserved.
from .cifar import CIFAR100, write_cifar100

__all__ = ['CIFAR100', 'write_cifar100']
