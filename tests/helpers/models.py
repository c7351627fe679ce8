# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Tiny model dicts and batches shared by the tests."""
from typing import List, Optional, Tuple

import torch
from mmpretrain.structures import DataSample

#: a classifier preprocessor that leaves the (random) inputs as they are
PREPROCESSOR = dict(
    type='mmpretrain.ClsDataPreprocessor',
    num_classes=10,
    mean=[0., 0., 0.],
    std=[1., 1., 1.])


def classifier(depth: int = 8, backbone: Optional[dict] = None) -> dict:
    """An mmpretrain classifier on a CIFAR ResNet of ``depth`` (or on
    ``backbone``; 10 classes, 64 channels into the head), with fully scoped
    types."""
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=backbone or dict(type='mmreviewkd.CifarResNet', depth=depth),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(
            type='mmpretrain.LinearClsHead',
            num_classes=10,
            in_channels=64,
            loss=dict(type='mmpretrain.CrossEntropyLoss')))


def batch(n: int = 4,
          size: int = 32,
          seed: int = 0) -> Tuple[torch.Tensor, List[DataSample]]:
    """``n`` random (3, size, size) inputs with labels ``i % 10``."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 3, size, size, generator=g)
    samples = [DataSample().set_gt_label(i % 10) for i in range(n)]
    return inputs, samples
