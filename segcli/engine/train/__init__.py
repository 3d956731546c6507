"""``segcli train``: the splits (``data``), the training loop (``trainer``), its resumable state
and checkpoints (``checkpointing``), the moving average of the weights (``ema``), the schedule
planned for a ``--time`` budget (``budget``) and the run's metrics table (``metrics_csv``). Validation
runs the shared inference path (``segcli.engine.core.inference``), so its figures are those of
``segcli eval --weights``."""
