# Copyright (c) mmreviewkd contributors. All rights reserved.
