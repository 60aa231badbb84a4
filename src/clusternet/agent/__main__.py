"""``python -m clusternet.agent``: run clusternet-agent."""

from clusternet.agent.app import main

main()
