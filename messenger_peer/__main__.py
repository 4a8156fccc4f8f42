"""``python -m messenger_peer``: the headless CLI."""
import sys

from .cli import main

sys.exit(main())
