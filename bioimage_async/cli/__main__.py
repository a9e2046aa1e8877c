"""``python -m bioimage_async.cli``: the same as the ``bioimage-async`` command."""

import sys

from .main import main

sys.exit(main())
