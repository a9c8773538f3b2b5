"""Command-line entry points: ``tidegate`` and the kubectl plugin ``kubectl-tidegate``."""
