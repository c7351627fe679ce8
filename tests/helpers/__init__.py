# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Small on-disk datasets in real formats, for tests and the quickstart."""
from .coco import make_coco
from .fake_data import make_cifar100

__all__ = ['make_cifar100', 'make_coco']
