"""Runners: one registered backend each (local, subprocess, slurm), typed execution options,
the run-folder protocol and its leases."""
