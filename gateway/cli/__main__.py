"""``python -m gateway.cli``: the ``interview-gateway`` command without its installed script.

The tests and ``simulate`` start child commands this way, with the same interpreter they run on.
"""

import sys

from gateway.cli import main

sys.exit(main())
