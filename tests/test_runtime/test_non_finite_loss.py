# Copyright (c) mmreviewkd contributors. All rights reserved.
"""NonFiniteLossHook (on in every ReviewKD config): a NaN/inf loss stops
training with one line naming the term, the iteration and the last good
checkpoint; ``action='skip'`` skips such steps instead."""
import math
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper

from helpers.fake_data import make_cifar100
from helpers.tiny_config import tiny_distill_config
from helpers.tool_runner import logged_scalars, run_tool
from mmreviewkd.engine.hooks import NonFiniteLossError, NonFiniteLossHook
from mmreviewkd.utils.distill_runtime import DISTILL_HOOKS

# 0-based iteration 5 = 2nd iteration of epoch 2 (4 iterations per epoch;
# epoch 1 has warm-up factor 0, so the feature loss is not computed there)
NAN_LOSS = dict(type='NonFiniteInjectLoss', at_iters=[5], value='nan')


def test_reviewkd_runtime_enables_the_hook_by_default():
    hooks = DISTILL_HOOKS
    assert dict(type='mmreviewkd.NonFiniteLossHook', action='stop') in hooks


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('non_finite')
    return make_cifar100(
        str(tmp / 'data'),
        classes=[f'c{i}' for i in range(10)],
        num_train=32,
        num_test=16)


@pytest.mark.slow
def test_nan_distillation_loss_stops_training_in_one_line(data_root, tmp_path):
    config = tmp_path / 'nan_stop.py'
    config.write_text(tiny_distill_config(data_root, distill_loss=NAN_LOSS))
    work_dir = str(tmp_path / 'work')
    proc = run_tool('train.py', str(config), '--work-dir', work_dir)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert last.startswith('error: non-finite loss at iteration 6 (epoch '
                           '2): loss_hcl=nan. Training stopped; last good '
                           f'checkpoint: {ckpt}.'), last
    assert f'--resume {ckpt}' in last
    assert 'Traceback' not in proc.stdout + proc.stderr
    # stopped before any checkpoint of the broken weights was written
    assert osp.isfile(ckpt) and not osp.exists(
        osp.join(work_dir, 'epoch_2.pth'))
    assert not osp.exists(osp.join(work_dir, 'student_final.pth'))


@pytest.mark.slow
def test_skip_mode_skips_the_step_and_training_goes_on(data_root, tmp_path):
    hooks = [
        dict(h) for h in DISTILL_HOOKS
        if 'NonFiniteLossHook' not in h['type']
    ] + [dict(type='mmreviewkd.NonFiniteLossHook', action='skip')]
    config = tmp_path / 'nan_skip.py'
    config.write_text(
        tiny_distill_config(
            data_root, distill_loss=NAN_LOSS, custom_hooks=hooks))
    work_dir = str(tmp_path / 'work')
    proc = run_tool('train.py', str(config), '--work-dir', work_dir)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert ('Non-finite loss at iteration 6 (epoch 2): loss_hcl=nan; the '
            'optimizer step was skipped (1 in a row, at most 5).') in out
    records = logged_scalars(work_dir)
    assert [r['iter'] for r in records] == list(range(1, 13))
    assert math.isnan(records[5]['loss_hcl'])
    assert all(math.isfinite(r['loss_hcl']) for r in records[6:])

    import mmreviewkd  # noqa: F401  (weights-only allow-list)
    final = torch.load(osp.join(work_dir, 'epoch_3.pth'), map_location='cpu')
    for key, value in final['state_dict'].items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
    for state in final['optimizer']['state'].values():
        assert torch.isfinite(state['momentum_buffer']).all()


# ---------------------------------------------------------------- unit tests
class TinyNet(nn.Module):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        return self.bn(self.fc(x))


def fake_runner(tmp_path, model, optim_wrapper, name):
    return SimpleNamespace(
        model=model,
        optim_wrapper=optim_wrapper,
        iter=0,
        epoch=0,
        work_dir=str(tmp_path),
        message_hub=MessageHub.get_instance(name),
        logger=MMLogger.get_instance(name))


def train_iter(hook, runner, loss_scale=1.0, extra_outputs=None,
               data_batch=None):
    """One iteration the way MMEngine runs it, with the hook around it."""
    hook.before_train_iter(runner, 0, data_batch)
    x = torch.randn(8, 4)
    out = runner.model(x)
    loss_task = out.pow(2).mean()
    loss_hcl = out.abs().mean() * loss_scale
    runner.optim_wrapper.update_params(loss_task + loss_hcl)
    outputs = dict(
        loss=(loss_task + loss_hcl).detach(),
        loss_cls=loss_task.detach(),
        loss_hcl=loss_hcl.detach(),
        distill_weight=torch.tensor(1.0))
    outputs.update(extra_outputs or {})
    hook.after_train_iter(runner, 0, data_batch, outputs=outputs)
    runner.iter += 1


def make(tmp_path, name, **hook_kwargs):
    torch.manual_seed(0)
    model = TinyNet()
    optim = OptimWrapper(
        torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2))
    runner = fake_runner(tmp_path, model, optim, name)
    hook = NonFiniteLossHook(**hook_kwargs)
    hook.before_train(runner)
    return hook, runner


def test_skip_leaves_parameters_optimizer_state_and_buffers_untouched(
        tmp_path):
    hook, runner = make(tmp_path, 'nf_skip', action='skip')
    train_iter(hook, runner)  # builds momentum buffers
    model, sgd = runner.model, runner.optim_wrapper.optimizer
    params = [p.detach().clone() for p in model.parameters()]
    moms = [
        sgd.state[p]['momentum_buffer'].clone() for p in model.parameters()
    ]
    buffers = [b.clone() for b in model.buffers()]
    train_iter(hook, runner, loss_scale=float('nan'))
    for p, before in zip(model.parameters(), params):
        torch.testing.assert_close(p.detach(), before)  # no step, no decay
    for p, before in zip(model.parameters(), moms):
        torch.testing.assert_close(sgd.state[p]['momentum_buffer'], before)
    for b, before in zip(model.buffers(), buffers):
        torch.testing.assert_close(b, before)  # BN running stats restored
    assert hook._consecutive == 1
    train_iter(hook, runner)  # a finite step goes through again
    assert hook._consecutive == 0
    assert not torch.equal(next(model.parameters()).detach(), params[0])
    hook.after_train(runner)
    assert not hook._handles


def test_skip_mode_stops_after_too_many_in_a_row(tmp_path):
    hook, runner = make(
        tmp_path, 'nf_many', action='skip', max_consecutive_skips=2)
    train_iter(hook, runner, loss_scale=float('inf'))
    train_iter(hook, runner, loss_scale=float('nan'))
    with pytest.raises(
            NonFiniteLossError,
            match='at iteration 3 .*non-finite for 3 iterations '
            'in a row: loss_hcl=nan'):
        train_iter(hook, runner, loss_scale=float('nan'))


def test_stop_names_the_task_loss_iteration_and_checkpoint(tmp_path):
    hook, runner = make(tmp_path, 'nf_stop')
    train_iter(hook, runner)
    runner.epoch = 4
    runner.message_hub.update_info('last_ckpt', '/ckpts/epoch_4.pth')
    with pytest.raises(NonFiniteLossError) as info:
        train_iter(
            hook,
            runner,
            extra_outputs=dict(
                loss_cls=torch.tensor(float('inf')),
                loss=torch.tensor(float('inf'))))
    message = str(info.value)
    assert '\n' not in message
    assert message.startswith(
        'non-finite loss at iteration 2 (epoch 5): loss_cls=inf. Training '
        'stopped; last good checkpoint: /ckpts/epoch_4.pth.')
    assert '--resume /ckpts/epoch_4.pth' in message


def test_stop_without_any_checkpoint_says_so(tmp_path):
    hook, runner = make(tmp_path, 'nf_none')
    with pytest.raises(
            NonFiniteLossError,
            match='loss_hcl=nan.*last good checkpoint: none'):
        train_iter(hook, runner, loss_scale=float('nan'))


def test_only_loss_outputs_are_checked(tmp_path):
    hook, runner = make(tmp_path, 'nf_ok')
    # `distill_weight` or accuracies are not losses
    train_iter(
        hook,
        runner,
        extra_outputs=dict(distill_weight=torch.tensor(float('nan'))))
    bad = NonFiniteLossHook.non_finite_terms(
        dict(loss=torch.tensor(float('nan')), acc=float('nan')))
    assert list(bad) == ['loss'] and math.isnan(bad['loss'])


def test_bad_hook_arguments():
    with pytest.raises(ValueError, match='"stop" or "skip"'):
        NonFiniteLossHook(action='ignore')
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        NonFiniteLossHook(action='skip', max_consecutive_skips=0)


def test_nan_in_the_input_batch_is_blamed_before_the_losses(tmp_path):
    """NaN images make every loss NaN (also loss_hcl x 0 in the warm-up):
    the message names the data and the iteration, not the learning rate."""
    hook, runner = make(tmp_path, 'nf_data')
    images = [torch.rand(3, 4, 4) for _ in range(4)]
    images[2][0, 1, 1] = float('nan')
    nan = torch.tensor(float('nan'))
    with pytest.raises(NonFiniteLossError) as info:
        train_iter(
            hook,
            runner,
            extra_outputs={'student.loss': nan, 'loss_hcl': nan, 'loss': nan},
            data_batch=dict(inputs=images))
    message = str(info.value)
    assert message.startswith(
        'non-finite loss at iteration 1 (epoch 1): the input batch itself '
        'holds NaN/inf values (1 of 4 samples)')
    assert 'Fix the data' in message and 'learning rate or' not in message
    # integer (uint8) images cannot hold NaN: the losses are named
    assert NonFiniteLossHook.non_finite_inputs(
        dict(inputs=[torch.zeros(3, 2, 2, dtype=torch.uint8)])) is None
