# Copyright (c) mmreviewkd contributors. All rights reserved.
"""Pair the student's feature levels with the teacher's, and describe them.

Levels pair one to one in order when both sides give as many. Otherwise
they pair by stride (input size / map size at the build-time dummy input;
the pooled 1 x 1 levels pair with each other) and the levels of the side
with more that find no partner are dropped, e.g. the stride-2 level of a
MobileNetV2 student against a ResNet teacher whose first stage has stride 4.
"""
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import torch.nn as nn

from mmreviewkd.utils.errors import ConfigError

Size = Tuple[int, int]
StrideKey = Union[str, Tuple[int, int]]


@dataclass
class Level:
    """One feature level of one side.

    Attributes:
        name (str): Module the level is read from.
        channels (int): Channels.
        size (tuple[int, int]): (H, W) at the dummy input.
        pooled (bool): The pooled embedding level.
    """
    name: str
    channels: int
    size: Size
    pooled: bool = False

    def stride(self, input_size: Size) -> StrideKey:
        """``'pooled'`` or the (vertical, horizontal) stride."""
        if self.pooled:
            return 'pooled'
        return tuple(
            max(1, round(i / s)) for i, s in zip(input_size, self.size))

    def where(self, input_size: Size) -> str:
        """``'s8 28x28'`` (or ``'pooled'``)."""
        if self.pooled:
            return 'pooled'
        return f'{_stride_text(self.stride(input_size))} ' \
               f'{self.size[0]}x{self.size[1]}'

    def describe(self, input_size: Size) -> str:
        return f'{self.name} {self.channels}ch {self.where(input_size)}'


def _stride_text(key: StrideKey) -> str:
    if isinstance(key, str):
        return key
    return f's{key[0]}' if key[0] == key[1] else f's{key[0]}x{key[1]}'


@dataclass
class LevelPairing:
    """Which student level is distilled from which teacher level.

    Attributes:
        input_size (tuple[int, int]): (H, W) of the dummy input.
        student (list[Level]): Every student level found, shallow to deep.
        teacher (list[Level]): Every teacher level found.
        student_keep (list[int]): Paired student levels (indices).
        teacher_keep (list[int]): Their teacher partners, same order.
    """
    input_size: Size
    student: List[Level]
    teacher: List[Level]
    student_keep: List[int]
    teacher_keep: List[int]

    @classmethod
    def pair(cls, student: Sequence[Level], teacher: Sequence[Level],
             input_size: Size) -> 'LevelPairing':
        """Pair in order if the counts agree, else by stride.

        Raises:
            ConfigError: The strides do not decide the pairing.
        """
        student, teacher = list(student), list(teacher)
        if len(student) == len(teacher):
            keep = list(range(len(student)))
            return cls(tuple(input_size), student, teacher, keep, keep)
        more, fewer = (student, teacher) if len(student) > len(teacher) \
            else (teacher, student)
        more_keys = [lv.stride(input_size) for lv in more]
        fewer_keys = [lv.stride(input_size) for lv in fewer]
        problem = None
        for key in dict.fromkeys(fewer_keys):
            n_more, n_fewer = more_keys.count(key), fewer_keys.count(key)
            if n_more != n_fewer:
                sides = ('student', 'teacher') if more is student else \
                    ('teacher', 'student')
                problem = (f'{_stride_text(key)}: {n_more} {sides[0]} and '
                           f'{n_fewer} {sides[1]} level(s)')
                break
        keep_more = [i for i, k in enumerate(more_keys) if k in fewer_keys]
        if problem is None and [more_keys[i] for i in keep_more] != fewer_keys:
            problem = 'the strides come in another order'
        if problem is not None:
            raise ConfigError(
                f'ReviewKDDistiller: the student gives {len(student)} feature'
                f' levels but the teacher {len(teacher)}, and pairing them '
                f'by stride at input {input_size[0]}x{input_size[1]} fails '
                f'({problem}). student: {_listing(student, input_size)} | '
                f'teacher: {_listing(teacher, input_size)}. Choose the '
                f'levels with student_feats=dict(points=[...]) / '
                f'teacher_feats=dict(points=[...]) (pooled=None drops the '
                f'pooled level).')
        keep_fewer = list(range(len(fewer)))
        if more is student:
            return cls(
                tuple(input_size), student, teacher, keep_more, keep_fewer)
        return cls(tuple(input_size), student, teacher, keep_fewer, keep_more)

    @property
    def dropped(self) -> Tuple[List[Level], List[Level]]:
        """(student levels, teacher levels) that were not paired."""
        return ([
            lv for i, lv in enumerate(self.student)
            if i not in self.student_keep
        ], [
            lv for i, lv in enumerate(self.teacher)
            if i not in self.teacher_keep
        ])

    def pairs(self) -> List[Tuple[Level, Level]]:
        return [(self.student[s], self.teacher[t])
                for s, t in zip(self.student_keep, self.teacher_keep)]

    def summary(self) -> str:
        """One line: what was paired by stride and what was dropped."""
        pairs = ', '.join(f'{s.name} <-> {t.name} ({s.where(self.input_size)})'
                          for s, t in self.pairs())
        dropped = [
            f'{who} {lv.name} ({lv.where(self.input_size)})'
            for who, levels in zip(('student', 'teacher'), self.dropped)
            for lv in levels
        ]
        return (f'ReviewKDDistiller: the student gives {len(self.student)} '
                f'feature levels, the teacher {len(self.teacher)}; paired by '
                f'stride: {pairs}; dropped {", ".join(dropped)}.')

    def table(self, connector: nn.Module) -> str:
        """The levels as a text table, with the connector part of each."""
        header = ('level', 'student', 'ch', 'stride (size)', 'teacher', 'ch',
                  'stride (size)', 'connector')
        rows = [header]
        for i, (s, t) in enumerate(self.pairs()):
            rows.append(
                (str(i), s.name, str(s.channels), s.where(self.input_size),
                 t.name, str(t.channels), t.where(self.input_size),
                 _connector_part(connector, i)))
        widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
        lines = [
            '  '.join(v.ljust(w) for v, w in zip(row, widths)).rstrip()
            for row in rows
        ]
        lines.insert(1, '-' * len(lines[0]))
        for who, levels in zip(('student', 'teacher'), self.dropped):
            listed = ', '.join(lv.describe(self.input_size)
                               for lv in levels) or 'none'
            lines.append(f'dropped {who} levels: {listed}')
        return '\n'.join(lines)


def _listing(levels: Sequence[Level], input_size: Size) -> str:
    return ', '.join(lv.describe(input_size) for lv in levels)


def _connector_part(connector: nn.Module, index: int) -> str:
    if connector is None:
        return 'none'
    pairs = getattr(connector, 'pairs', None)
    if pairs is not None:  # one adapter per (student, teacher) level pair
        targets = [str(j) for i, j in pairs if i == index]
        return f'adapters to teacher levels {", ".join(targets)}' \
            if targets else 'not distilled'
    abfs = getattr(connector, 'abfs', None)
    if abfs is None or index >= len(abfs):
        return type(connector).__name__
    abf = abfs[index]
    if not getattr(abf, 'fuse', False):
        fuse = 'no fuse (deepest)'
    elif getattr(abf, 'fusion', 'attention') == 'sum':
        fuse = 'adds the deeper level'
    else:
        fuse = 'fuses the deeper level'
    return f'abfs[{index}] {fuse}, mid {getattr(abf, "mid_channels", "?")}'
