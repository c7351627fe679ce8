# Copyright (c) mmreviewkd contributors. All rights reserved.
"""The picture tools: review matrix, training curves, ABF maps, visualizer
backends."""
import contextlib
import glob
import importlib.util
import io
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.tiny_config import tiny_distill_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool(name):
    path = osp.join(ROOT, 'tools', 'analysis', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'_tool_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(tool, argv):
    """Run a tool's main through run_cli: (exit code, stdout, stderr)."""
    from mmreviewkd.utils.cli_errors import run_cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_cli(lambda: tool.main(argv), stderr=err)
    return code, out.getvalue(), err.getvalue()


def read_png(path):
    assert osp.isfile(path) and osp.getsize(path) > 0, path
    with Image.open(path) as im:
        assert im.format == 'PNG'
        return np.asarray(im.convert('RGB'))


def differ(a, b):
    return a.shape != b.shape or not np.array_equal(a, b)


# -------------------------------------------------------------- review matrix
def results_json(path, cells, baseline=69.1):
    rows = [
        dict(name=f's{i}t{j}', matrix=[i, j], mean=v)
        for (i, j), v in cells.items()
    ]
    rows.append(dict(name='alone', matrix=None, mean=baseline))
    with open(path, 'w') as f:
        json.dump(
            dict(
                title='matrix',
                rows=rows,
                baseline=dict(name='alone', paper=69.1, mean=baseline,
                              value=baseline)), f)
    return str(path)


def test_review_matrix_png_differs_with_the_results(tmp_path):
    tool = load_tool('plot_review_matrix')
    cells = {(i, j): 69.0 + i - j for i in range(1, 5) for j in range(1, 5)}
    a = results_json(tmp_path / 'a.json', cells)
    cells2 = dict(cells)
    cells2[(1, 4)] = 50.0
    del cells2[(2, 3)]  # a missing cell
    b = results_json(tmp_path / 'b.json', cells2)
    outs = []
    for name, path in (('a', a), ('b', b)):
        out = str(tmp_path / f'{name}.png')
        code, stdout, err = run_main(tool, [path, '--out', out])
        assert code == 0, err
        assert f'review matrix: {out}' in stdout
        outs.append(read_png(out))
    assert differ(*outs)
    # the paper's Table 6 next to ours: a wider picture
    out = str(tmp_path / 'both.png')
    assert run_main(tool, [a, '--paper', '--out', out])[0] == 0
    assert read_png(out).shape[1] > outs[0].shape[1]
    # --paper alone
    assert run_main(tool, ['--paper', '--out', str(tmp_path / 'p.png')
                           ])[0] == 0
    read_png(str(tmp_path / 'p.png'))


def test_review_matrix_colours_red_below_blue_above_blank_missing():
    from mmreviewkd.analysis.figures import figure_to_rgb, new_figure
    from mmreviewkd.analysis.review_matrix import (PAPER_TABLE6, draw_matrix,
                                                   matrix_from_results)
    matrix, baseline = matrix_from_results(
        dict(
            rows=[
                dict(name='a', matrix=[1, 1], mean=72.0),
                dict(name='b', matrix=[1, 2], mean=60.0),
                dict(name='c', matrix=[2, 2], mean=None),  # not run yet
                dict(name='d', matrix=[2, 1], mean=69.5),
            ],
            baseline=dict(name='alone', value=70.0)))
    assert baseline == 70.0
    assert matrix.shape == (2, 2) and np.isnan(matrix[1, 1])
    fig = new_figure(4, 4)
    ax = fig.subplots()
    draw_matrix(ax, matrix, baseline, 'test', fig)
    image = figure_to_rgb(fig).astype(int)
    height = image.shape[0]

    def pixel(i, j):  # near a cell's corner, away from its text
        x, y = ax.transData.transform((j - 0.38, i - 0.38))
        return image[int(round(height - y)), int(round(x))]

    above, below, missing, near = pixel(0, 0), pixel(0, 1), pixel(
        1, 1), pixel(1, 0)
    assert above[2] > above[0] + 40  # blue
    assert below[0] > below[2] + 40  # red
    assert (missing >= 250).all()  # blank
    assert abs(int(near[0]) - int(near[2])) < 60  # close to the baseline
    # the paper's numbers as printed in Table 6
    assert PAPER_TABLE6[2] == (69.2, 69.8, 71.0, 50.4)


def test_review_matrix_without_baseline_is_a_one_line_error(tmp_path):
    tool = load_tool('plot_review_matrix')
    path = tmp_path / 'r.json'
    path.write_text(json.dumps(dict(rows=[dict(name='a', matrix=[1, 1],
                                               mean=1.0)])))
    code, _, err = run_main(tool, [str(path), '--out',
                                   str(tmp_path / 'm.png')])
    assert code == 1 and err.count('\n') == 1 and '--baseline' in err
    code, _, err = run_main(tool, [str(path), '--baseline', '1.5', '--out',
                                   str(tmp_path / 'm.png')])
    assert code == 0, err


def test_tensorboard_and_local_backends_get_the_picture(tmp_path):
    pytest.importorskip('tensorboard')
    tool = load_tool('plot_review_matrix')
    vis = str(tmp_path / 'vis')
    code, _, err = run_main(tool, [
        '--paper', '--out',
        str(tmp_path / 'm.png'), '--vis-backend', 'tensorboard',
        '--vis-backend', 'local', '--vis-dir', vis
    ])
    assert code == 0, err
    events = glob.glob(
        osp.join(vis, '**', 'events.out.tfevents*'), recursive=True)
    assert events and os.path.getsize(events[0]) > 0
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    acc = EventAccumulator(osp.dirname(events[0]))
    acc.Reload()
    assert 'm' in acc.Tags()['images']
    local = glob.glob(osp.join(vis, '**', 'm_0.png'), recursive=True)
    assert local
    assert read_png(local[0]).shape == read_png(str(tmp_path / 'm.png')).shape


# --------------------------------------------------------------------- curves
def write_distill_log(path, hcl_scale=1.0, iters=5, epochs=3):
    """A ReviewKD run's scalars.json; the last training line of each epoch
    is its last iteration, as MMEngine logs it."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        for e in range(1, epochs + 1):
            for i in range(1, iters + 1):
                it = (e - 1) * iters + i
                rec = {
                    'lr': 0.1,
                    'data_time': 0.01,
                    'student.loss': 2.0 / it,
                    'loss_hcl.0': 0.3 * hcl_scale / it,
                    'loss_hcl.1': 0.2 * hcl_scale / it,
                    'loss_hcl': 0.5 * hcl_scale / it,
                    'distill_weight': min(1.0, (e - 1) / 2),
                    'loss': 2.0 / it + 0.5 * hcl_scale / it,
                    'time': 0.1,
                    'epoch': e,
                    'iter': it,
                    'memory': 10,
                    'step': it
                }
                f.write(json.dumps(rec) + '\n')
            f.write(
                json.dumps({
                    'accuracy/top1': 10.0 * e * hcl_scale,
                    'accuracy/top5': 50.0,
                    'data_time': 0.01,
                    'time': 0.1,
                    'step': e
                }) + '\n')
    return path


def test_curves_png_differs_with_the_logs(tmp_path):
    tool = load_tool('plot_curves')
    write_distill_log(
        str(tmp_path / 'a' / '20260101_000000' / 'vis_data' /
            'scalars.json'))
    b = write_distill_log(str(tmp_path / 'b.json'), hcl_scale=3.0)
    outs = []
    for name, run in (('a', str(tmp_path / 'a')), ('b', b)):
        out = str(tmp_path / f'{name}.png')
        code, stdout, err = run_main(tool, [run, '--out', out])
        assert code == 0, err
        assert f'curves: {out}' in stdout
        outs.append(read_png(out))
    assert differ(*outs)
    out = str(tmp_path / 'two.png')
    code, _, err = run_main(tool, [
        str(tmp_path / 'a'), b, '--labels', 'A', 'B', '--keys', 'loss_hcl.*',
        'accuracy/top1', '--out', out
    ])
    assert code == 0, err
    read_png(out)
    code, _, err = run_main(
        tool, [b, '--keys', 'nothing*', '--out', str(tmp_path / 'x.png')])
    assert code == 1 and 'matches nothing' in err and err.count('\n') == 1
    code, _, err = run_main(tool, [str(tmp_path / 'empty_dir_that_is_not'),
                                   '--out', str(tmp_path / 'x.png')])
    assert code == 1 and err.startswith('error:')


def test_curve_panels_and_series(tmp_path):
    from mmreviewkd.analysis.curves import (default_panels, load_runs,
                                            task_loss_series)
    write_distill_log(
        str(tmp_path / 'r' / '20260101_000000' / 'vis_data' /
            'scalars.json'))
    # the student alone: loss only
    alone = str(tmp_path / 'alone.json')
    with open(alone, 'w') as f:
        f.write(json.dumps(dict(lr=0.1, loss=3.0, epoch=1, iter=2)) + '\n')
        f.write(json.dumps({'accuracy/top1': 5.0, 'step': 1}) + '\n')
    (label, run), (label2, run2) = load_runs([str(tmp_path / 'r'), alone])
    assert (label, label2) == ('r', 'alone')
    assert default_panels([run, run2]) == [
        'task_loss', 'loss_hcl', 'loss_hcl.0', 'loss_hcl.1',
        'distill_weight', 'accuracy/top1'
    ]
    assert default_panels([run2]) == ['task_loss', 'accuracy/top1']
    # an extra distillation term (ReviewKD + KD): its loss and weight
    kd = str(tmp_path / 'kd.json')
    with open(kd, 'w') as f:
        f.write(json.dumps({'lr': 0.1, 'student.loss': 1.0, 'loss_hcl': 0.5,
                            'loss_kd': 0.2, 'distill_weight': 1.0,
                            'distill_weight.kd': 0.9, 'loss': 1.7,
                            'iter': 1}) + '\n')
    (_, run3), = load_runs([kd])
    assert default_panels([run3]) == [
        'task_loss', 'loss_hcl', 'loss_kd', 'distill_weight',
        'distill_weight.kd'
    ]
    assert task_loss_series(run3)[1] == [1.0]  # not `loss` (1.7)
    xs, ys, what = task_loss_series(run)
    assert what == 'student.loss' and xs[:2] == [1, 2]
    assert ys[1] == pytest.approx(1.0)
    assert task_loss_series(run2)[:2] == ([2], [3.0])
    # evaluations at the last iteration of their epoch (5 per epoch)
    assert run.val_series_by_iter('accuracy/top1') == ([5, 10, 15],
                                                       [10.0, 20.0, 30.0])
    assert run.last_eval('accuracy/top1') == (3, 30.0)


# ------------------------------------------------------------------- ABF maps
@pytest.fixture(scope='module')
def abf_setup(tmp_path_factory):
    """A tiny distiller config (resnet14 -> resnet8, 4 levels), two
    checkpoints that differ in the ABF weights, a student-only checkpoint
    and two images."""
    from mmreviewkd.analysis.abf_maps import build_distiller
    tmp = tmp_path_factory.mktemp('abf')
    config = str(tmp / 'tiny.py')
    with open(config, 'w') as f:
        f.write(tiny_distill_config(str(tmp / 'data'), warmup_epochs=0))
    torch.manual_seed(0)
    distiller, _ = build_distiller(config)
    ckpt_a = str(tmp / 'a.pth')
    torch.save({'state_dict': distiller.state_dict(), 'meta': {}}, ckpt_a)
    with torch.no_grad():
        for abf in distiller.connector.abfs:
            if abf.att_conv is not None:
                abf.att_conv.weight.mul_(-3.0)
                abf.att_conv.bias.add_(1.0)
    ckpt_b = str(tmp / 'b.pth')
    torch.save({'state_dict': distiller.state_dict(), 'meta': {}}, ckpt_b)
    student = str(tmp / 'student.pth')
    torch.save({'state_dict': distiller.student.state_dict(), 'meta': {}},
               student)
    rng = np.random.RandomState(0)
    images = []
    for name in ('one', 'two'):
        path = str(tmp / f'{name}.png')
        img = rng.randint(0, 256, size=(32, 32, 3)).astype(np.uint8)
        img[:16] = img[:16] // 4 if name == 'one' else 255 - img[:16] // 4
        Image.fromarray(img).save(path)
        images.append(path)
    return dict(tmp=tmp, config=config, a=ckpt_a, b=ckpt_b,
                student=student, images=images)


def test_abf_pngs_differ_with_images_and_checkpoints(abf_setup):
    tool = load_tool('visualize_abf')
    s = abf_setup
    out_a = str(s['tmp'] / 'out_a')
    code, stdout, err = run_main(
        tool, [s['config'], s['a'], *s['images'], '--out-dir', out_a])
    assert code == 0, err
    pngs = [osp.join(out_a, 'one_abf.png'), osp.join(out_a, 'two_abf.png')]
    for path in pngs:
        assert f'ABF maps: {path}' in stdout
    one, two = read_png(pngs[0]), read_png(pngs[1])
    assert differ(one, two)
    out_b = str(s['tmp'] / 'out_b')
    code, _, err = run_main(
        tool, [s['config'], s['b'], s['images'][0], '--out-dir', out_b])
    assert code == 0, err
    assert differ(one, read_png(osp.join(out_b, 'one_abf.png')))


def test_abf_maps_match_the_training_step(abf_setup):
    """The attention maps are the ABFs' sigmoid maps and the HCL per level
    is what ReviewKDDistiller.loss logs for the same image."""
    from mmengine.dataset import pseudo_collate

    from mmreviewkd.analysis.abf_maps import (ImageLoader, build_distiller,
                                              compute_abf_maps,
                                              load_distiller_checkpoint)
    s = abf_setup
    distiller, cfg = build_distiller(s['config'])
    load_distiller_checkpoint(distiller, s['b'])
    packed = ImageLoader(cfg)(s['images'][0])
    result = compute_abf_maps(distiller, packed)
    with Image.open(s['images'][0]) as im:
        assert np.array_equal(result['image'], np.asarray(im))  # RGB
    levels = result['levels']
    # resnet8: three stages (32, 16, 8) and the pooled level; all but the
    # deepest fuse
    assert [lv['size'] for lv in levels] == [(32, 32), (16, 16), (8, 8),
                                             (1, 1)]
    assert levels[-1]['attention'] is None
    for lv in levels[:-1]:
        att = lv['attention']
        assert att.shape == (2, ) + lv['size']
        assert (att > 0).all() and (att < 1).all()
    assert not distiller.connector.abfs[0].record_attention  # switched off
    # the same image through the training step (eval mode, no warm-up)
    data = distiller.data_preprocessor(pseudo_collate([packed]), False)
    data['data_samples'][0].set_gt_label(0)
    with torch.no_grad():
        losses = distiller.loss(data['inputs'], data['data_samples'])
    for lv in levels:
        assert lv['hcl'] == pytest.approx(
            float(losses[f'loss_hcl.{lv["index"]}']), rel=1e-5)
    # the level-0 map by hand: sigmoid(att_conv([x', up(residual)]))
    abf0, abf1 = distiller.connector.abfs[0], distiller.connector.abfs[1]
    feats = []
    hook = abf0.norm1.register_forward_hook(
        lambda m, i, o: feats.append(o))
    hook1 = abf1.register_forward_hook(lambda m, i, o: feats.append(o[1]))
    distiller.student_tap.clear()
    with torch.no_grad():
        distiller.student.extract_feat(data['inputs'])
        distiller.connector(distiller.student_tap.pop())
    hook.remove()
    hook1.remove()
    residual, x = feats[0], feats[1]  # abfs run deepest first
    up = torch.nn.functional.interpolate(residual, size=x.shape[-2:])
    with torch.no_grad():
        expected = torch.sigmoid(abf0.att_conv(torch.cat([x, up], 1)))[0]
    np.testing.assert_allclose(
        levels[0]['attention'], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_abf_refuses_a_student_only_checkpoint_in_one_line(abf_setup):
    tool = load_tool('visualize_abf')
    s = abf_setup
    code, _, err = run_main(tool, [
        s['config'], s['student'], s['images'][0], '--out-dir',
        str(s['tmp'] / 'x')
    ])
    assert code == 1
    assert err.count('\n') == 1 and err.startswith('error: ')
    assert 'student-only' in err and 'ABF' in err
    code, _, err = run_main(tool, [
        s['config'], s['a'],
        str(s['tmp'] / 'nope.png'), '--out-dir',
        str(s['tmp'] / 'x')
    ])
    assert code == 1 and err.count('\n') == 1 and 'nope.png' in err
