# Copyright (c) mmreviewkd contributors. All rights reserved.
"""pytest puts this folder on ``sys.path``, so tests import the test-only
helpers (tiny datasets in real formats, tiny configs, tool runners, hooks
that kill or poison a run) as ``helpers``; tool subprocesses get it through
``helpers.tool_runner.tool_env``."""
