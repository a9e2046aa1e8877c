"""The command line: ``bioimage-async copy|convert|downsample|pyramid|info|demo|...``."""
