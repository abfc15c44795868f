"""``python -m bench run [--quick] [--gateways ...]``: see bench/README.md."""

from .run import main

main()
