"""``python -m clusternet.hub``: run clusternet-hub."""

from clusternet.hub.app import main

main()
