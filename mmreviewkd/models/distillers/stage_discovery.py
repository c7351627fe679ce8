# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Find the stage features of any backbone from one dummy forward.

Every submodule of the model is hooked (start and end of each call) while
``model.extract_feat`` runs once on zeros in eval mode. Calls nest, so they
form a call tree rooted at the backbone's call. The *main path* is the
sequence of the backbone's direct child calls, where a child that holds two
or more downsampling steps itself (e.g. a ``features`` Sequential wrapping a
whole network) is replaced by its own children. Along the main path, the
feature of an output resolution is the last call that ends at that
resolution before the first call of a coarser resolution starts (the
deepest resolution: its last call). A container ends after its children, so
the outermost of the calls ending together is the one seen; calls nested in
a block (``layer3.0.conv1`` of a ResNet, the 1 x 1 maps of a
squeeze-excitation) are never on the main path.

Transformer outputs become N x C x H x W maps without touching the model:
``(tokens (N, L, C), (h, w))`` as returned by mmpretrain's ``PatchEmbed``,
``PatchMerging`` and Swin stages, and ViT-style tokens (N, E + L, C) with
the grid (h, w) returned by the latest such call of the same forward (the
patch embedding), the E = ``backbone.num_extra_tokens`` leading tokens
(class / distillation tokens) dropped.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from mmreviewkd.utils.errors import ConfigError

Grid = Tuple[int, int]

#: most candidates named in an error message
MAX_LISTED = 12


def returned_grid(output: Any) -> Optional[Grid]:
    """``(h, w)`` of an output ``(tokens (N, h * w, C), (h, w))``, else None.

    Args:
        output (Any): A module's forward output.

    Returns:
        tuple[int, int] | None: The token grid.
    """
    if not (isinstance(output, (tuple, list)) and len(output) == 2
            and torch.is_tensor(output[0]) and output[0].dim() == 3):
        return None
    hw = output[1]
    if not (isinstance(hw, (tuple, list)) and len(hw) == 2 and all(
            isinstance(v, int) or torch.is_tensor(v) and v.numel() == 1
            for v in hw)):
        return None
    grid = (int(hw[0]), int(hw[1]))
    return grid if output[0].shape[1] == grid[0] * grid[1] else None


def tokens_to_map(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Tokens (N, E + h * w, C) to a map (N, C, h, w).

    Args:
        tokens (Tensor): Token sequence, the ``E`` extra tokens first.
        grid (tuple[int, int]): ``(h, w)`` of the patch tokens.

    Returns:
        Tensor: The patch tokens as an N x C x h x w map.
    """
    h, w = grid
    n, length, c = tokens.shape
    if length < h * w:
        raise ConfigError(f'FeatureTap: {length} tokens cannot fill the '
                          f'{h} x {w} patch grid.')
    return tokens[:, length - h * w:].transpose(1, 2).reshape(n, c, h, w)


def dummy_forward_error(who: str, shape: Sequence[int],
                        error: Exception) -> ConfigError:
    """The one-line error for a model that fails the build-time forward."""
    return ConfigError(
        f'ReviewKDDistiller: the {who} failed a dummy forward of shape '
        f'{tuple(shape)} ({type(error).__name__}: '
        f'{(str(error).splitlines() or [""])[0][:200]}); set '
        f'infer_input_shape to an input size the model accepts.')


@dataclass
class Call:
    """One module call of the recorded forward.

    Attributes:
        name (str): Module name in the model.
        parent (int, optional): Index of the enclosing call.
        in_size (tuple[int, int], optional): Spatial size of the input.
        shape (tuple[int, ...], optional): (N, C, H, W) of the output as a
            map, None if it is none.
        grid_from (str, optional): For tokens (N, E + L, C): the module
            whose returned grid shapes them.
        params (bool): The module has parameters of its own or below it.
        children (list[int]): Indices of the calls it makes directly.
        held (Tensor, optional): The output (or its last element) if it
            is a pooled embedding, (N, C) or (N, C, 1, 1); kept (small) to
            tell the pooled embedding from stages.
    """
    name: str
    parent: Optional[int]
    in_size: Optional[Grid]
    shape: Optional[Tuple[int, ...]] = None
    grid_from: Optional[str] = None
    params: bool = False
    children: List[int] = field(default_factory=list)
    held: Optional[torch.Tensor] = None

    @property
    def size(self) -> Optional[Grid]:
        return None if self.shape is None else tuple(self.shape[-2:])

    def is_global_pool(self) -> bool:
        """A parameter-free reduction of a larger map to 1 x 1."""
        return (self.size == (1, 1) and not self.params
                and self.in_size is not None and self.in_size != (1, 1))

    def describe(self) -> str:
        return f'{self.name} {self.shape}'


def _in_size(args: tuple) -> Optional[Grid]:
    if args and torch.is_tensor(args[0]) and args[0].dim() == 4:
        return tuple(args[0].shape[-2:])
    return returned_grid(args[:2]) if len(args) >= 2 else None


def _pooled(output: Any) -> Optional[torch.Tensor]:
    """The output (or its last element) if it is (N, C) or (N, C, 1, 1)."""
    last = output[-1] if isinstance(output, (tuple, list)) and output \
        else output
    if torch.is_tensor(last) and (last.dim() == 2 or last.dim() == 4
                                  and last.shape[-2:].numel() == 1):
        return last
    return None


class CallRecorder:
    """Hooks every submodule of ``model`` and records its calls.

    Args:
        model (nn.Module): The model.
        num_extra_tokens (int): Leading extra tokens of ViT-style token
            outputs (N, E + L, C).
    """

    def __init__(self, model: nn.Module, num_extra_tokens: int = 0) -> None:
        self.calls: List[Call] = []
        self.num_extra_tokens = num_extra_tokens
        self._stack: List[int] = []
        self._grid: Optional[Tuple[str, Grid]] = None
        self._handles = []
        for name, module in model.named_modules():
            if not name:
                continue
            params = next(module.parameters(), None) is not None
            self._handles += [
                module.register_forward_pre_hook(self._pre(name, params)),
                module.register_forward_hook(self._post())
            ]

    def _pre(self, name: str, params: bool):

        def hook(module, args):
            parent = self._stack[-1] if self._stack else None
            self.calls.append(
                Call(name, parent, _in_size(args), params=params))
            if parent is not None:
                self.calls[parent].children.append(len(self.calls) - 1)
            self._stack.append(len(self.calls) - 1)

        return hook

    def _post(self):

        def hook(module, args, output):
            call = self.calls[self._stack.pop()]
            # kept alive, so that storage pointers compare uniquely
            call.held = _pooled(output)
            grid = returned_grid(output)
            if torch.is_tensor(output) and output.dim() == 4:
                call.shape = tuple(output.shape)
            elif grid is not None:
                n, _, c = output[0].shape
                call.shape = (n, c, *grid)
                self._grid = (call.name, grid)
            elif torch.is_tensor(output) and output.dim() == 3 and \
                    self._grid is not None:
                source, (h, w) = self._grid
                n, length, c = output.shape
                if length in (h * w, h * w + self.num_extra_tokens):
                    call.shape, call.grid_from = (n, c, h, w), source

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class ForwardRecord:
    """The calls of one dummy forward of a model, and what they tell.

    Args:
        model (nn.Module): The student or teacher.
        input_shape (Sequence[int]): (C, H, W) of the dummy input.
        who (str): ``'student'`` or ``'teacher'``, for messages.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int],
                 who: str) -> None:
        self.who = who
        self.input_size: Grid = tuple(input_shape[-2:])
        backbone = getattr(model, 'backbone', None)
        recorder = CallRecorder(
            model, int(getattr(backbone, 'num_extra_tokens', 0) or 0))
        dummy = torch.zeros(1, *input_shape)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model.extract_feat(dummy)
        except Exception as e:
            raise dummy_forward_error(who, dummy.shape, e) from None
        finally:
            recorder.remove()
            model.train(was_training)
        self.calls = recorder.calls
        self.counts: Dict[str, int] = {}
        for call in self.calls:
            self.counts[call.name] = self.counts.get(call.name, 0) + 1

    def last_call(self, name: str) -> Optional[Call]:
        """The last call of module ``name`` (what a forward hook keeps)."""
        return next((c for c in reversed(self.calls) if c.name == name), None)

    def grid_source(self, name: str) -> Optional[str]:
        """The grid module of a token output (N, E + L, C) of ``name``, if
        both are called once (so that hooks see the same calls)."""
        call = self.last_call(name)
        if call is None or call.grid_from is None or \
                self.counts[name] != 1 or self.counts[call.grid_from] != 1:
            return None
        return call.grid_from

    # ---------------------------------------------------------- discovery
    def _descends(self, call: Call) -> bool:
        """True if ``call`` holds two or more resolution changes itself."""
        sizes = {
            self.calls[i].size
            for i in call.children if self.calls[i].size is not None
            and not self.calls[i].is_global_pool()
        }
        return len(sizes - {call.in_size}) >= 2

    def _expand(self, index: int) -> List[Call]:
        path = []
        for i in self.calls[index].children:
            if self._descends(self.calls[i]):
                path += self._expand(i)
            else:
                path.append(self.calls[i])
        return path

    def main_path(self, root: str = 'backbone') -> List[Call]:
        """The main-path calls of module ``root`` that give maps, except
        global pools, modules called more than once and the 1 x 1 map that
        ``root`` returns flattened as its pooled embedding (ConvNeXt's
        ``norm3``)."""
        index = next((i for i, c in enumerate(self.calls) if c.name == root),
                     None)
        if index is None:
            return []
        vector = self.calls[index].held
        if vector is not None and vector.dim() != 2:
            vector = None
        return [
            c for c in self._expand(index) if c.shape is not None
            and not c.is_global_pool() and self.counts[c.name] == 1
            and not (vector is not None and c.held is not None
                     and c.held.data_ptr() == vector.data_ptr())
        ]

    def candidates(self, root: str = 'backbone') -> str:
        """Modules with map outputs, for error messages (one line)."""
        calls = self.main_path(root) or [
            c for c in self.calls
            if c.shape is not None and c.name.startswith(f'{root}.')
        ]
        seen: Dict[str, Call] = {}
        for call in calls:
            seen.setdefault(call.name, call)
        listed = [c.describe() for c in list(seen.values())[:MAX_LISTED]]
        more = len(seen) - len(listed)
        return ', '.join(listed) + (f', ... (+{more} more)' if more else '') \
            if listed else 'none (no submodule returns an N x C x H x W map)'

    def stages(self, root: str = 'backbone') -> List[Call]:
        """One call per output resolution, shallow to deep.

        Raises:
            ConfigError: No map on the main path, or the main path returns
                to a finer resolution after a coarser one (ambiguous).
        """
        path = self.main_path(root)
        picks: Dict[Grid, Call] = {}
        for call in path:
            area = call.size[0] * call.size[1]
            if any(a < area for a in (s[0] * s[1] for s in picks)):
                raise self._discovery_error(
                    f'its main path returns to {call.size[0]} x '
                    f'{call.size[1]} ({call.name}) after a coarser map, '
                    f'so its stages are ambiguous')
            picks[call.size] = call
        if not picks:
            raise self._discovery_error('none of its submodules returns an '
                                        'N x C x H x W map on the main path')
        return list(picks.values())

    def _discovery_error(self, why: str) -> ConfigError:
        return ConfigError(
            f'ReviewKDDistiller: cannot infer the stage features of the '
            f'{self.who} backbone: {why}. Candidates at input '
            f'{self.input_size[0]} x {self.input_size[1]}: '
            f'{self.candidates()}; set {self.who}_feats=dict(points=[module '
            f'names, shallow to deep]).')

    def stride(self, call: Call) -> str:
        """``'s8'`` style stride of a call's map at the dummy input."""
        return f's{max(1, round(self.input_size[0] / call.size[0]))}'
