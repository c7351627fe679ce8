# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Tiny model dicts shared by the tests."""


def classifier(depth: int) -> dict:
    """An mmpretrain classifier on a CIFAR ResNet of ``depth`` (10 classes,
    64 channels into the head), with fully scoped types."""
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='mmreviewkd.CifarResNet', depth=depth),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(
            type='mmpretrain.LinearClsHead',
            num_classes=10,
            in_channels=64,
            loss=dict(type='mmpretrain.CrossEntropyLoss')))
