# Copyright (c) mmreviewkd contributors. All rights reserved.
from .hcl import HCLLoss

__all__ = ['HCLLoss']
