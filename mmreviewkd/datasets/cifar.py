# Copyright (c) mmreviewkd contributors. All rights reserved.
import os.path as osp

from mmpretrain.datasets import CIFAR100 as _MMPretrainCIFAR100

from mmreviewkd.registry import DATASETS


@DATASETS.register_module()
class CIFAR100(_MMPretrainCIFAR100):
    """mmpretrain's CIFAR-100 (the original python pickle files), with the
    md5 check optional.

    With ``verify_md5=True`` (default) it behaves exactly like
    ``mmpretrain.CIFAR100``. ``verify_md5=False`` accepts any files in the
    same format: re-packed copies, subsets, and the small datasets our tests
    and the quickstart write. Files must still exist: a missing or empty
    ``data_root`` is an error, never a download attempt unless
    ``download=True``.

    Args:
        verify_md5 (bool): Check the files' md5 sums. Defaults to True.
        **kwargs: Arguments of ``mmpretrain.CIFAR100`` (``data_root``,
            ``split``, ``pipeline``, ``download``...).
    """

    def __init__(self, verify_md5: bool = True, **kwargs) -> None:
        self.verify_md5 = verify_md5
        if not verify_md5:
            self.meta = dict(self.meta, md5=None)
        kwargs.setdefault('download', False)
        super().__init__(**kwargs)

    def load_data_list(self):
        folder = osp.join(self.data_root or '', self.base_folder)
        files = [name for name, _ in self.train_list + self.test_list]
        missing = [f for f in files if not osp.isfile(osp.join(folder, f))]
        if missing and not self.download:
            raise FileNotFoundError(
                f'CIFAR-100 files {missing} not found in {folder!r}; put the '
                f'extracted "cifar-100-python" folder under data_root '
                f'(see README "Data and checkpoints").')
        return super().load_data_list()

    def _check_integrity(self) -> bool:
        if self.verify_md5:
            return super()._check_integrity()
        folder = osp.join(self.data_root, self.base_folder)
        return all(
            osp.isfile(osp.join(folder, name))
            for name, _ in self.train_list + self.test_list)
