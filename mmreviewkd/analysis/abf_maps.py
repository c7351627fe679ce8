# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Where does each ABF look? Its two attention maps over the input image.

For every fusing level of the ABF chain, ``ABF`` predicts two sigmoid maps
from the level's own (transformed) student feature ``x'`` and the deeper
residual: channel 0 weighs ``x'``, channel 1 the residual. This module runs
images through a trained distiller the way training does (the config's test
pipeline, the distiller's data preprocessor, student and teacher features
read by the distiller's taps, the teacher's own normalisation when it
differs) and draws both maps over the image, with each level's HCL between
the ABF output and the teacher feature.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from mmreviewkd.utils.errors import CheckpointError, ConfigError

from .figures import new_figure, save_figure


def build_distiller(config: str,
                    cfg_options: Optional[dict] = None,
                    device: str = 'cpu'):
    """The distiller of a ReviewKD ``config`` with random weights
    (``teacher_ckpt`` is not read: a distiller checkpoint holds the
    teacher's weights), in eval mode on ``device``.

    Returns:
        tuple: ``(distiller, cfg)``.

    Raises:
        ConfigError: The config's model is not a distiller with an ABF
            chain.
    """
    from mmengine.registry import DefaultScope

    import mmreviewkd  # noqa: F401  (version check, checkpoint allow-list)
    from mmreviewkd.registry import MODELS
    from mmreviewkd.utils import register_all_modules
    from mmreviewkd.utils.config_check import load_config
    register_all_modules(init_default_scope=False)
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model_cfg = copy.deepcopy(cfg.get('model') or {})
    if 'ReviewKDDistiller' not in str(model_cfg.get('type', '')):
        raise ConfigError(
            f'{config} is not a ReviewKD config (its model is '
            f'{model_cfg.get("type")!r}); give the config the distiller was '
            f'trained with.')
    model_cfg['teacher_ckpt'] = None
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        distiller = MODELS.build(model_cfg)
    connector = getattr(distiller, 'connector', None)
    if not callable(getattr(connector, 'record_attention', None)) \
            or not hasattr(connector, 'abfs'):
        what = 'has no connector' if connector is None else \
            f'has a {type(connector).__name__}'
        raise ConfigError(
            f'{config}: the distiller {what}, no ABF attention to draw; '
            f'visualize_abf needs a ReviewKD config with an ABFConnector.')
    return distiller.to(device).eval(), cfg


def load_distiller_checkpoint(distiller, checkpoint: str) -> None:
    """Load a distiller checkpoint (student, connector and teacher) strictly.

    Raises:
        CheckpointError: A student-only checkpoint (it has no ABF and
            teacher weights), or one of another model.
    """
    from mmreviewkd.utils.checkpoint_check import (STUDENT, fit_checkpoint,
                                                   read_checkpoint, state_of)
    ckpt = read_checkpoint(checkpoint)
    if not any(k.startswith(STUDENT) for k in state_of(ckpt)):
        raise CheckpointError(
            f'{checkpoint!r} is a student-only checkpoint (e.g. '
            f'student_final.pth): it has no ABF or teacher weights; give a '
            f'checkpoint of the distillation run (WORK_DIR/epoch_N.pth).')
    target, state, _ = fit_checkpoint(distiller, ckpt, checkpoint)
    target.load_state_dict(state, strict=True)


def _dataset_with_pipeline(dataset: dict) -> Optional[dict]:
    while dataset is not None and 'pipeline' not in dataset:
        if dataset.get('dataset') is not None:
            dataset = dataset['dataset']
        elif dataset.get('datasets'):
            dataset = dataset['datasets'][0]
        else:
            return None
    return dataset


class ImageLoader:
    """The config's test pipeline for image files.

    ``LoadAnnotations`` steps are dropped (there are no annotations). A
    pipeline without a loading step (in-memory datasets such as CIFAR,
    which hand RGB arrays to the pipeline) gets the file read as RGB.

    Args:
        cfg (Config): The loaded config (``test_dataloader`` or
            ``val_dataloader``).
    """

    def __init__(self, cfg) -> None:
        from mmengine.dataset import Compose
        from mmengine.registry import DefaultScope
        loader = cfg.get('test_dataloader') or cfg.get('val_dataloader')
        dataset = _dataset_with_pipeline(
            copy.deepcopy((loader or {}).get('dataset')))
        if dataset is None:
            raise ConfigError('the config has no test_dataloader.dataset.'
                              'pipeline to prepare the images with.')
        steps = [
            t for t in dataset['pipeline']
            if 'LoadAnnotations' not in str(t.get('type', ''))
        ]
        self.reads_files = any('LoadImage' in str(t.get('type', ''))
                               for t in steps)
        scope = dataset.get('_scope_') or cfg.get('default_scope')
        with DefaultScope.overwrite_default_scope(scope):
            self.pipeline = Compose(steps)

    def __call__(self, path: str) -> dict:
        """The packed sample (``inputs``, ``data_samples``) of one file."""
        if not osp.isfile(path):
            raise FileNotFoundError(f'image {path!r} does not exist.')
        if self.reads_files:
            data = dict(img_path=path, img_id=0, sample_idx=0)
        else:
            import mmcv
            img = mmcv.imread(path, channel_order='rgb')
            if img is None:
                raise FileNotFoundError(
                    f'failed to load image {path!r} (not an image file).')
            data = dict(
                img=img,
                img_path=path,
                img_shape=img.shape[:2],
                ori_shape=img.shape[:2],
                sample_idx=0)
        return self.pipeline(data)


@torch.no_grad()
def compute_abf_maps(distiller, packed: dict) -> dict:
    """Run one packed sample through the distiller and read the ABFs.

    Returns:
        dict: ``image`` (H, W, 3) uint8 RGB as the network sees it (before
        normalisation), ``input_size`` (H, W) of the batch, and ``levels``,
        shallow to deep, each with ``size`` (h, w) of the student level,
        ``attention`` ((2, h, w) numpy: own-feature weight, residual
        weight; None for a level that does not fuse) and ``hcl`` (the
        level's HCL between the ABF output and the teacher feature; None
        when the loss has no ``level_loss``).
    """
    from mmengine.dataset import pseudo_collate

    from mmreviewkd.models.distillers.teacher_input import normalization_of
    data = distiller.data_preprocessor(pseudo_collate([packed]), False)
    inputs, samples = data['inputs'], data['data_samples']
    distiller.student_tap.clear()
    distiller.student.extract_feat(inputs)
    student_feats = distiller.student_tap.pop()
    distiller.teacher_tap.clear()
    teacher_in = inputs if distiller.teacher_renorm is None else \
        distiller.teacher_renorm(inputs, samples)
    distiller.teacher.extract_feat(teacher_in)
    teacher_feats = distiller.teacher_tap.pop()
    connector = distiller.connector
    connector.record_attention(True)
    try:
        outs = connector(student_feats, [t.shape[-2:] for t in teacher_feats])
        attention = [abf.attention for abf in connector.abfs]
    finally:
        connector.record_attention(False)
    level_loss = getattr(distiller.distill_loss, 'level_loss', None)
    # the teacher level each output is compared with (as in training)
    targets = [
        teacher_feats[j] for j in getattr(connector, 'teacher_levels',
                                          range(len(outs)))
    ]
    levels = []
    for i, (s, out, t) in enumerate(zip(student_feats, outs, targets)):
        att = attention[i]
        levels.append(
            dict(
                index=i,
                size=tuple(s.shape[-2:]),
                attention=att[0].float().cpu().numpy()
                if att is not None else None,
                hcl=float(level_loss(out, t)) if level_loss else None))
    image = packed['inputs']
    image = image.cpu().numpy() if torch.is_tensor(image) else \
        np.asarray(image)
    image = np.ascontiguousarray(image.transpose(1, 2, 0))
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if normalization_of(distiller.data_preprocessor)[2]:  # BGR -> RGB
        image = image[..., ::-1]
    image = np.clip(image, 0, 255).astype(np.uint8)
    return dict(
        image=image, input_size=tuple(inputs.shape[-2:]), levels=levels)


def upsample(att: np.ndarray, input_size: Tuple[int, int],
             image_size: Tuple[int, int]) -> np.ndarray:
    """A (h, w) map nearest-resized to the batch input (the resizing ABF
    itself uses) and cropped to the image (padding is bottom / right)."""
    t = torch.from_numpy(np.ascontiguousarray(att))[None, None].float()
    up = F.interpolate(t, size=tuple(input_size), mode='nearest')[0, 0]
    return up[:image_size[0], :image_size[1]].numpy()


def draw_abf_figure(result: dict, title: str = ''):
    """The figure of one image: the input, then per fusing level its two
    attention maps over the image, the level's HCL in the titles."""
    image = result['image']
    fusing = [lv for lv in result['levels'] if lv['attention'] is not None]
    if not fusing:
        raise ConfigError('no level of the connector fuses with attention '
                          '(fusion="sum" or a single level): no ABF maps to '
                          'draw.')
    ncols = 1 + 2 * len(fusing)
    fig = new_figure(2.3 * ncols + 0.6, 3.1)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    axes[0].imshow(image)
    h, w = image.shape[:2]
    axes[0].set_title(f'input {h}x{w}', fontsize=8)
    gray = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                               dtype=np.float32)
    mappable = None
    for k, level in enumerate(fusing):
        i, (lh, lw) = level['index'], level['size']
        hcl = f'HCL {level["hcl"]:.4g}' if level['hcl'] is not None else ''
        for c, what in enumerate(('own feature x\'', 'deeper residual')):
            ax = axes[1 + 2 * k + c]
            ax.imshow(gray, cmap='gray', vmin=0, vmax=255)
            mappable = ax.imshow(
                upsample(level['attention'][c], result['input_size'],
                         (h, w)),
                cmap='jet',
                alpha=0.65,
                vmin=0.0,
                vmax=1.0)
            ax.set_title(f'level {i} ({lh}x{lw}): {what}\n{hcl}',
                         fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    others = [
        f'level {lv["index"]} {lv["hcl"]:.4g}' for lv in result['levels']
        if lv['attention'] is None and lv['hcl'] is not None
    ]
    line = f'{title}: ' if title else ''
    line += 'ABF attention weights (0-1) over the input'
    if others:
        line += f'; HCL of non-fusing {", ".join(others)}'
    fig.suptitle(line, fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.97, 0.95))
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), fraction=0.015, pad=0.01)
    return fig


def _out_names(images: Sequence[str]) -> List[str]:
    stems = [osp.splitext(osp.basename(p))[0] for p in images]
    seen: Dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if stems.count(stem) == 1 else
                     f'{stem}_{seen[stem]}')
    return [f'{n}_abf.png' for n in names]


def visualize_abf(config: str,
                  checkpoint: str,
                  images: Sequence[str],
                  out_dir: str,
                  device: str = 'cpu',
                  cfg_options: Optional[dict] = None,
                  vis_backends: Sequence[str] = (),
                  vis_dir: Optional[str] = None) -> List[str]:
    """One PNG per image with the ABF maps of the distiller ``checkpoint``.

    Args:
        config (str): The ReviewKD config of the run.
        checkpoint (str): A distiller checkpoint of that run.
        images (Sequence[str]): Image files.
        out_dir (str): Where the PNGs go (``<image stem>_abf.png``).
        device (str): ``cpu`` or ``cuda``.
        cfg_options (dict, optional): Config overrides.
        vis_backends (Sequence[str]): Also write to these MMEngine
            visualizer backends (see :mod:`.figures`).

    Returns:
        list[str]: The PNG paths.
    """
    if not images:
        raise ConfigError('give at least one image file.')
    missing = [p for p in images if not osp.isfile(p)]
    if missing:
        raise FileNotFoundError(f'image {missing[0]!r} does not exist.')
    distiller, cfg = build_distiller(config, cfg_options, device)
    load_distiller_checkpoint(distiller, checkpoint)
    loader = ImageLoader(cfg)
    paths = []
    for image, name in zip(images, _out_names(images)):
        result = compute_abf_maps(distiller, loader(image))
        fig = draw_abf_figure(result, osp.basename(image))
        paths.append(
            save_figure(
                fig,
                osp.join(out_dir, name),
                vis_backends=vis_backends,
                vis_dir=vis_dir))
    return paths
