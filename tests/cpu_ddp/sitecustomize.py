# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Test harness only: MMEngine's launchers on a machine without a GPU.

MMEngine 0.10.7's ``_init_dist_pytorch`` / ``_init_dist_slurm`` call
``torch.cuda.set_device(local_rank)`` before ``init_process_group``, which
raises when there is no GPU. With this directory on ``PYTHONPATH`` (see
``helpers.tool_runner.cpu_ddp_env``) Python imports this file at
start-up, and ``torch.cuda.set_device`` becomes a no-op while CUDA is not
available (it is untouched on machines with GPUs). The rest of a CPU DDP run
is configuration: ``env_cfg.dist_cfg.backend='gloo'`` and a
``model_wrapper_cfg`` with ``device_ids=None``.

torch is not imported here: the patch is applied when the program itself
imports ``torch.cuda``, so other Python processes started with this path
(launchers, stand-in tools) do not pay for it. Being first on the path, it
hides any other ``sitecustomize`` module (the test virtualenv has none).
"""
import importlib.abc
import importlib.machinery
import sys


def _patch(cuda) -> None:
    set_device = cuda.set_device

    def set_device_if_available(device) -> None:
        if cuda.is_available():
            set_device(device)

    cuda.set_device = set_device_if_available


class _PatchTorchCuda(importlib.abc.MetaPathFinder):
    """Patches ``torch.cuda`` right after it is imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != 'torch.cuda':
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module) -> None:
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _PatchTorchCuda())
