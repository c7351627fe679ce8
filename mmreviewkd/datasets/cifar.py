# Copyright (c) mmreviewkd contributors. All rights reserved.
import os
import os.path as osp
import pickle
from typing import Optional, Sequence

import numpy as np
from mmpretrain.datasets import CIFAR100 as _MMPretrainCIFAR100
from mmpretrain.datasets.utils import calculate_md5

from mmreviewkd.registry import DATASETS
from mmreviewkd.utils.errors import DataError


@DATASETS.register_module()
class CIFAR100(_MMPretrainCIFAR100):
    """mmpretrain's CIFAR-100 (the original python pickle files) for local
    files: never downloads, md5 check opt-in.

    ``verify_md5=False`` (default) accepts any files in the same format:
    the official ones, re-packed copies, subsets, and the small datasets the
    quickstart writes (:func:`write_cifar100`). With ``verify_md5=True`` a
    file whose md5 differs from the official one is an error naming that
    file. Files must exist: a missing ``data_root`` is an error naming the
    folder, never a download attempt unless ``download=True``.

    Args:
        verify_md5 (bool): Check the files' md5 sums against the official
            release. Defaults to False.
        **kwargs: Arguments of ``mmpretrain.CIFAR100`` (``data_root``,
            ``split``, ``pipeline``, ``download``...).
    """

    def __init__(self, verify_md5: bool = False, **kwargs) -> None:
        self.verify_md5 = verify_md5
        kwargs.setdefault('download', False)
        super().__init__(**kwargs)

    def _files(self) -> list:
        folder = osp.join(self.data_prefix['root'], self.base_folder)
        return [(osp.join(folder, name), md5)
                for name, md5 in self.train_list + self.test_list +
                [(self.meta['filename'], self.meta['md5'])]]

    def load_data_list(self):
        missing = [path for path, _ in self._files() if not osp.isfile(path)]
        if missing and not self.download:
            names = [osp.basename(p) for p in missing]
            raise FileNotFoundError(
                f'CIFAR-100 files {names} not found in '
                f'{osp.dirname(missing[0])!r}; put the extracted '
                f'"cifar-100-python" folder under data_root (see README '
                f'"Data and checkpoints").')
        return super().load_data_list()

    def _check_integrity(self) -> bool:
        for path, md5 in self._files():
            if not osp.isfile(path):
                return False
            if self.verify_md5 and calculate_md5(path) != md5:
                raise DataError(
                    f'CIFAR-100 file {path!r} has another md5 than the '
                    f'official release ({md5}): a damaged or re-packed '
                    f'copy. Extract the official archive again, or set '
                    f'verify_md5=False for your own files.')
        return True


def write_cifar100(root: str,
                   train_images: np.ndarray,
                   train_labels: Sequence[int],
                   test_images: np.ndarray,
                   test_labels: Sequence[int],
                   classes: Optional[Sequence[str]] = None) -> str:
    """Write images in the CIFAR-100 python format that :class:`CIFAR100`
    reads (``root/cifar-100-python/{train,test,meta}``).

    Args:
        root (str): The ``data_root`` to write into.
        train_images / test_images (np.ndarray): (N, 32, 32, 3) uint8.
        train_labels / test_labels (Sequence[int]): Class indices.
        classes (Sequence[str], optional): Class names; defaults to 100
            names ``class_0``...

    Returns:
        str: ``root``.
    """
    classes = list(classes) if classes is not None else [
        f'class_{i}' for i in range(100)
    ]
    folder = osp.join(root, 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)
    files = {
        'meta': {
            'fine_label_names': classes,
            'coarse_label_names': [f'super_{i}' for i in range(20)],
        }
    }
    for split, images, labels in (('train', train_images, train_labels),
                                  ('test', test_images, test_labels)):
        images = np.asarray(images, dtype=np.uint8)
        if images.shape[1:] != (32, 32, 3):
            raise ValueError(f'write_cifar100: {split} images must be '
                             f'(N, 32, 32, 3), got {images.shape}.')
        files[split] = {
            'filenames': [f'{split}_{i}.png' for i in range(len(images))],
            'batch_label': f'{split} batch',
            'fine_labels': [int(x) for x in labels],
            'coarse_labels': [int(x) % 20 for x in labels],
            'data': images.transpose(0, 3, 1, 2).reshape(len(images), -1),
        }
    for name, obj in files.items():
        with open(osp.join(folder, name), 'wb') as f:
            pickle.dump(obj, f)
    return root
