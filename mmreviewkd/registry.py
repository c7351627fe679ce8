# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The registries mmreviewkd adds to, each a child of MMEngine's root.

A config whose ``default_scope`` is ``'mmpretrain'`` or ``'mmdet'`` uses our
components as ``type='mmreviewkd.ReviewKDDistiller'`` (or with
``_scope_='mmreviewkd'``); MMEngine imports this module on demand and the
``locations`` import the implementations.

More details can be found at
https://mmengine.readthedocs.io/en/latest/advanced_tutorials/registry.html.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

__all__ = ['MODELS', 'DATASETS', 'HOOKS', 'OPTIM_WRAPPERS', 'FUNCTIONS']

# distiller, connectors, losses, CIFAR / ImageNet backbones
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, locations=['mmreviewkd.models'])
# CIFAR-100 in its pickle format
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, locations=['mmreviewkd.datasets'])
# teacher evaluation, student export, non-finite loss guard, RNG states
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, locations=['mmreviewkd.engine'])
# bf16 autocast on CPU
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    locations=['mmreviewkd.engine'])
# DataLoader worker seeding (``worker_init_fn=dict(type=...)`` of a dataloader)
FUNCTIONS = Registry(
    'function',
    parent=MMENGINE_FUNCTIONS,
    locations=['mmreviewkd.datasets.worker_init'])
