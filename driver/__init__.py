"""prebuilds: a database-first reconciler for pools of prebuilt workspaces."""

__version__ = "0.1.0"
