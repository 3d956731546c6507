"""``segcli train``: the splits (``data``), the training loop (``trainer``), its resumable state
and checkpoints (``checkpointing``) and the run's metrics table (``metrics_csv``). Validation
runs the shared inference path (``segcli.engine.core.inference``), so its figures are those of
``segcli eval --weights``."""
