"""LeapBench's shared machinery: backbones, the rollout engine, configs, training and the CLI."""

from benchmark.errors import ConfigError

__all__ = ["ConfigError"]
