import sys

from . import _worker

_worker(sys.argv[1:])
