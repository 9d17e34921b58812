"""Helpers shared by the test folders: servers, clusters, the CLI runner."""
