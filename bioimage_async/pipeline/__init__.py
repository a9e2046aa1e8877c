"""The streaming engine: block tasks, the in-flight bound, compute pools, progress and stats."""
