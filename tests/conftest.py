pytest_plugins = ["clusternet.local.testing"]
