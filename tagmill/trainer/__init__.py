"""The bundled trainer: shard reader, backbones, losses, metrics, train/eval entrypoint."""
