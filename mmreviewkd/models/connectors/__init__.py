# Copyright (c) mmreviewkd contributors. All rights reserved.
from .abf import ABF, ABFConnector

__all__ = ['ABF', 'ABFConnector']
