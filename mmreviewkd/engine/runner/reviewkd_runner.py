# Copyright (c) mmreviewkd contributors. All rights reserved.
import copy
import os
import os.path as osp
import re
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.device import get_device
from mmengine.dist import is_distributed, is_main_process
from mmengine.model import is_model_wrapper, revert_sync_batchnorm
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner
from torch.nn.parallel import DistributedDataParallel

from mmreviewkd.registry import RUNNERS
from mmreviewkd.utils.checkpoint_io import (ATOMIC_BACKEND_ARGS,
                                            checkpoint_problem,
                                            is_partial_file,
                                            read_last_checkpoint)
from mmreviewkd.utils.cpu_memory import (resolve_reuse_setting,
                                         reuse_freed_cpu_memory)

from .rng_state import capture_rng_state, restore_rng_state

_CKPT_NAME = re.compile(r'(epoch|iter)_(\d+)\.pth')


def _is_remote(path: str) -> bool:
    return '://' in str(path)


@contextmanager
def _without_cuda_device_selection() -> Iterator[None]:
    """MMEngine's pytorch and slurm launchers call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which raises on a
    machine without CUDA. Skip that call (and only it) while they run."""
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = original


@RUNNERS.register_module()
class ReviewKDRunner(Runner):
    """MMEngine's :class:`~mmengine.runner.Runner` made safe for long runs.

    ``tools/train.py`` and ``tools/test.py`` use it for every config without
    its own ``runner_type``; ReviewKD configs also name it through
    ``configs/_base_/reviewkd_runtime.py``. It behaves like ``Runner``
    except:

    - **Atomic checkpoints.** Local checkpoints are written to a temporary
      file in the same directory, fsync'ed and moved into place with
      ``os.replace``, so a kill during a save never leaves a truncated file.
    - **Resume from the last complete checkpoint.** ``resume=True`` without
      ``load_from`` (``tools/train.py --resume``) checks the newest
      checkpoint of the work dir and, if it is truncated or corrupt, logs
      that it skips it and resumes from the newest complete one. An explicit
      checkpoint that is broken is a one-line error.
    - **RNG states** (Python, numpy, torch, CUDA) are stored in checkpoints
      and restored on resume, so augmentation continues as in an
      uninterrupted run.
    - **Distributed runs on CPU.** Without CUDA, an ``nccl`` backend is
      replaced by ``gloo``, MMEngine's launchers skip their
      ``torch.cuda.set_device`` call, ``MMDistributedDataParallel`` is
      built without ``device_ids`` and SyncBN falls back to BatchNorm (with
      a warning; PyTorch's SyncBatchNorm needs GPUs).
    - **Freed CPU memory is reused** on runs without CUDA (glibc only):
      large activations are not page-faulted in afresh every step (see
      :mod:`mmreviewkd.utils.cpu_memory`). ``env_cfg`` key
      ``reuse_freed_cpu_memory``: ``'auto'`` (default), True or False.
    """

    def __init__(self, *args, **kwargs) -> None:
        self._env_notes: List[str] = []
        self._loaded_meta: dict = {}
        super().__init__(*args, **kwargs)
        for note in self._env_notes:
            self.logger.info(note)

    # ------------------------------------------------------------ environment
    def setup_env(self, env_cfg: dict) -> None:
        """Set up the environment; distributed CPU runs use gloo, and CPU
        runs keep freed memory for reuse (``reuse_freed_cpu_memory``)."""
        reuse = resolve_reuse_setting(
            env_cfg.get('reuse_freed_cpu_memory', 'auto'),
            torch.cuda.is_available())
        if reuse:
            if reuse_freed_cpu_memory():
                self._env_notes.append(
                    'Freed CPU memory is kept for reuse (glibc mallopt; '
                    'env_cfg.reuse_freed_cpu_memory=False turns it off).')
            else:
                self._env_notes.append(
                    'env_cfg.reuse_freed_cpu_memory: not glibc, left the '
                    'allocator as it is.')
        if not self.distributed or is_distributed() \
                or torch.cuda.is_available():
            return super().setup_env(env_cfg)
        env_cfg = copy.deepcopy(dict(env_cfg))
        dist_cfg = dict(env_cfg.get('dist_cfg') or {})
        backend = dist_cfg.get('backend', 'nccl')
        if backend == 'nccl':
            dist_cfg['backend'] = 'gloo'
            self._env_notes.append(
                'CUDA is not available: torch.distributed uses the gloo '
                'backend instead of nccl (env_cfg.dist_cfg.backend).')
        env_cfg['dist_cfg'] = dist_cfg
        with _without_cuda_device_selection():
            return super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: Optional[dict],
                   model: nn.Module) -> nn.Module:
        """Wrap the model for distributed training.

        With CUDA this is MMEngine's ``Runner.wrap_model``. In a distributed
        run without CUDA the DDP wrapper gets no ``device_ids`` (PyTorch
        rejects them for CPU modules), and SyncBN (``cfg.sync_bn`` or SyncBN
        layers in the model) is replaced by BatchNorm with a warning, since
        PyTorch's SyncBatchNorm only runs on GPUs.
        """
        if not self.distributed or torch.cuda.is_available() \
                or is_model_wrapper(model):
            return super().wrap_model(model_wrapper_cfg, model)
        model = model.to(get_device())
        if self.cfg.get('sync_bn', None) is not None or any(
                isinstance(m, nn.SyncBatchNorm) for m in model.modules()):
            self.logger.warning(
                'SyncBN needs CUDA devices (PyTorch\'s SyncBatchNorm and DDP '
                'reject CPU modules with it); this CPU run uses BatchNorm. '
                'The same config synchronises BN on GPUs.')
            model = revert_sync_batchnorm(model)
        wrapper_cfg = dict(
            model_wrapper_cfg or dict(
                broadcast_buffers=False,
                find_unused_parameters=self.cfg.get('find_unused_parameters',
                                                    False)))
        wrapper_cfg.setdefault('type', 'MMDistributedDataParallel')
        default_args: dict = dict(module=model)
        wrapper = MODEL_WRAPPERS.get(wrapper_cfg['type'])
        if isinstance(wrapper, type) and issubclass(wrapper,
                                                    DistributedDataParallel):
            default_args['device_ids'] = None
        return MODEL_WRAPPERS.build(wrapper_cfg, default_args=default_args)

    # ------------------------------------------------------------ checkpoints
    def save_checkpoint(self,
                        out_dir: str,
                        filename: str,
                        file_client_args: Optional[dict] = None,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        meta: Optional[dict] = None,
                        by_epoch: bool = True,
                        backend_args: Optional[dict] = None,
                        **kwargs) -> None:
        """Save a checkpoint (only on the main process), atomically for
        local paths, with the RNG states in ``meta['rng_state']``."""
        if file_client_args is None and backend_args is None \
                and not _is_remote(out_dir):
            backend_args = dict(ATOMIC_BACKEND_ARGS)
        if meta is None or isinstance(meta, dict):
            meta = dict(meta or {})
            meta.setdefault('rng_state', capture_rng_state())
        super().save_checkpoint(
            out_dir,
            filename,
            file_client_args=file_client_args,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            meta=meta,
            by_epoch=by_epoch,
            backend_args=backend_args,
            **kwargs)

    def load_checkpoint(self,
                        filename: str,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):
        """Load a checkpoint into the model (and remember its ``meta``)."""
        checkpoint = super().load_checkpoint(
            filename,
            map_location=map_location,
            strict=strict,
            revise_keys=revise_keys)
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else {}
        self._loaded_meta = meta if isinstance(meta, dict) else {}
        return checkpoint

    def resume(self,
               filename: str,
               resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default') -> None:
        """Resume training state, then the RNG states saved with it."""
        self._loaded_meta = {}
        super().resume(
            filename,
            resume_optimizer=resume_optimizer,
            resume_param_scheduler=resume_param_scheduler,
            map_location=map_location)
        rng_state = self._loaded_meta.get('rng_state')
        if rng_state is None:
            self.logger.info('The checkpoint holds no RNG states; random '
                             'augmentation will differ from an '
                             'uninterrupted run.')
        elif self._randomness_cfg.get('diff_rank_seed') \
                and self.world_size > 1:
            self.logger.warning(
                'RNG states not restored: randomness.diff_rank_seed=True '
                'and the checkpoint holds the main process\'s states only.')
        else:
            restore_rng_state(rng_state)
            self.logger.info('Restored the RNG states saved with the '
                             'checkpoint.')

    def load_or_resume(self) -> None:
        """Load or resume; a resume picks the last complete checkpoint."""
        if self._has_loaded:
            return None
        if self._resume:
            if self._load_from is None:
                self._load_from = self._last_complete_checkpoint()
                if self._load_from is None:
                    return None  # nothing to resume: train from scratch
            elif not _is_remote(self._load_from):
                problem = checkpoint_problem(self._load_from)
                if problem is not None:
                    raise ValueError(
                        f'cannot resume from {self._load_from!r}: {problem}. '
                        f'Pass a complete checkpoint, or --resume without a '
                        f'path to use the last complete one in the work '
                        f'dir.')
        return super().load_or_resume()

    @staticmethod
    def _numbered_checkpoints(ckpt_dir: str) -> List[Tuple[str, int, str]]:
        """``(kind, step, path)`` of the ``epoch_N.pth`` / ``iter_N.pth``
        files in ``ckpt_dir``."""
        found = []
        if osp.isdir(ckpt_dir):
            for name in os.listdir(ckpt_dir):
                match = _CKPT_NAME.fullmatch(name)
                if match:
                    found.append((match.group(1), int(match.group(2)),
                                  osp.join(ckpt_dir, name)))
        return found

    def _resume_candidates(self) -> Tuple[str, List[str]]:
        """The checkpoint directory and its checkpoints, newest first.

        The work dir is searched first; the directory named by its
        ``last_checkpoint`` file only when the work dir has no checkpoints
        (``CheckpointHook(out_dir=...)``). So a copied or moved work dir
        resumes from its own files, not from where it was written.
        """
        pointer_target = read_last_checkpoint(self.work_dir)
        ckpt_dir = self.work_dir
        found = self._numbered_checkpoints(ckpt_dir)
        if not found and pointer_target is not None:
            if _is_remote(pointer_target):
                return osp.dirname(pointer_target), [pointer_target]
            ckpt_dir = osp.dirname(pointer_target) or self.work_dir
            found = self._numbered_checkpoints(ckpt_dir)
        kind = None
        if pointer_target is not None:
            match = _CKPT_NAME.fullmatch(osp.basename(pointer_target))
            kind = match.group(1) if match else None
        # newest first, the pointer's kind (epoch/iter) before the other
        found.sort(key=lambda x: (x[0] == kind, x[1]), reverse=True)
        candidates = [path for _, _, path in found]
        if pointer_target is not None and not _is_remote(pointer_target) \
                and osp.abspath(osp.dirname(pointer_target)) == \
                osp.abspath(ckpt_dir) and osp.abspath(pointer_target) not in {
                    osp.abspath(c) for c in candidates}:
            candidates.insert(0, pointer_target)  # a custom file name
        return ckpt_dir, candidates

    def _last_complete_checkpoint(self) -> Optional[str]:
        ckpt_dir, candidates = self._resume_candidates()
        if is_main_process() and osp.isdir(ckpt_dir):
            for name in os.listdir(ckpt_dir):
                if is_partial_file(name):
                    os.remove(osp.join(ckpt_dir, name))
                    self.logger.info(f'Removed {osp.join(ckpt_dir, name)}, '
                                     f'left by an interrupted save.')
        skipped = []
        for path in candidates:
            problem = None if _is_remote(path) else checkpoint_problem(path)
            if problem is None:
                if skipped:
                    names = ', '.join(f'{p} ({why})' for p, why in skipped)
                    self.logger.warning(
                        f'Resume: skipped incomplete checkpoint {names}; '
                        f'resuming from {path}, the last complete '
                        f'checkpoint.')
                else:
                    self.logger.info(f'Resume: resuming from {path}, the '
                                     f'latest checkpoint in {ckpt_dir}.')
                return path
            skipped.append((path, problem))
        if skipped:
            names = ', '.join(f'{p} ({why})' for p, why in skipped)
            raise RuntimeError(f'cannot resume: no complete checkpoint in '
                               f'{ckpt_dir}; skipped {names}.')
        self.logger.info(f'Resume: no checkpoint in {ckpt_dir}; training '
                         f'starts from scratch.')
        return None
