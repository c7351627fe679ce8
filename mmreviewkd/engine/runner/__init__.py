# Copyright (c) mmreviewkd contributors. All rights reserved.
from .reviewkd_runner import ReviewKDRunner
from .rng_state import capture_rng_state, restore_rng_state

__all__ = ['ReviewKDRunner', 'capture_rng_state', 'restore_rng_state']
