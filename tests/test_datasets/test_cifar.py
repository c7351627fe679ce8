# Copyright (c) mmreviewkd contributors. All rights reserved.
import numpy as np
import pytest

from mmreviewkd.datasets import CIFAR100, write_cifar100
from mmreviewkd.utils.errors import DataError


def _write(root):
    rng = np.random.RandomState(0)
    train = rng.randint(0, 255, (6, 32, 32, 3)).astype(np.uint8)
    test = rng.randint(0, 255, (4, 32, 32, 3)).astype(np.uint8)
    write_cifar100(str(root), train, [0, 1, 2, 0, 1, 2], test, [2, 1, 0, 2],
                   classes=['a', 'b', 'c'])
    return train, test


def test_written_files_read_back_exactly(tmp_path):
    train, test = _write(tmp_path)
    ds = CIFAR100(data_root=str(tmp_path), split='train')
    assert len(ds) == 6
    np.testing.assert_array_equal(ds.get_data_info(3)['img'], train[3])
    assert [ds.get_data_info(i)['gt_label'] for i in range(6)] == \
        [0, 1, 2, 0, 1, 2]
    ds = CIFAR100(data_root=str(tmp_path), split='test')
    np.testing.assert_array_equal(ds.get_data_info(0)['img'], test[0])


def test_md5_check_is_opt_in_and_names_the_file(tmp_path):
    _write(tmp_path)
    CIFAR100(data_root=str(tmp_path), split='train')  # default: no md5
    with pytest.raises(DataError) as info:
        CIFAR100(data_root=str(tmp_path), split='train', verify_md5=True)
    message = str(info.value)
    assert str(tmp_path / 'cifar-100-python' / 'train') in message
    assert 'another md5 than the official release' in message
    assert 'verify_md5=False' in message and '\n' not in message
    assert 'download=True' not in message
