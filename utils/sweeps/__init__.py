"""Sweeps over many models: 04's one-factor-at-a-time study (`study`), the finished cells a sweep hands back
(`shards`), and the fan-out of sweep cells over Ray (`fanout`, imported only with `--workers`)."""
