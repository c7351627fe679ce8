# Copyright (c) mmreviewkd contributors. All rights reserved.
from typing import Optional, Sequence

import numpy as np

from mmreviewkd.datasets import write_cifar100


def make_cifar100(root: str,
                  train_images: Optional[np.ndarray] = None,
                  train_labels: Optional[Sequence[int]] = None,
                  test_images: Optional[np.ndarray] = None,
                  test_labels: Optional[Sequence[int]] = None,
                  classes: Optional[Sequence[str]] = None,
                  num_train: int = 64,
                  num_test: int = 32,
                  seed: int = 0) -> str:
    """Write a dataset in the real CIFAR-100 python format.

    Creates ``root/cifar-100-python/{train,test,meta}``: pickled dicts with
    ``data`` (N x 3072 uint8, channel-major 32x32), ``fine_labels``,
    ``coarse_labels``, ``filenames``; ``meta`` with ``fine_label_names``.
    Without images, random images whose mean colour depends on the label
    (so they are learnable) are generated.

    Args:
        root (str): The ``data_root`` to write into.
        train_images / test_images (np.ndarray, optional): (N, 32, 32, 3)
            uint8 images.
        train_labels / test_labels (Sequence[int], optional): Labels.
        classes (Sequence[str], optional): Class names; defaults to 100
            names ``class_0``...
        num_train / num_test (int): Sizes of the generated splits.
        seed (int): Random seed of the generated images.

    Returns:
        str: ``root``.
    """
    classes = list(classes) if classes is not None else [
        f'class_{i}' for i in range(100)
    ]
    rng = np.random.RandomState(seed)

    def generate(n):
        labels = np.arange(n) % len(classes)
        base = (labels[:, None] * 37 % 256).astype(np.float64)
        images = rng.randint(0, 64, size=(n, 32, 32, 3)) + base[:, :, None,
                                                                 None] * 0.75
        return np.clip(images, 0, 255).astype(np.uint8), labels

    if train_images is None:
        train_images, train_labels = generate(num_train)
    if test_images is None:
        test_images, test_labels = generate(num_test)
    return write_cifar100(root, train_images, train_labels, test_images,
                          test_labels, classes)
