"""Data fixtures: digits, the shared CIFAR-10 archive, synthetic files (owned by the recipes part)."""
