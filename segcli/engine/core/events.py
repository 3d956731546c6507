"""The progress events each job reports, declared once: the engine calls ``on_event(kind,
**data)`` with one of its job's kinds (nothing below the CLI prints), and the CLI's printers
(``segcli.cli.common.EventPrinter``) draw them, refusing a kind that is not declared here.

- train: start, epoch_start, step (after every training step), val_start, val_step (after every
  validation image), val_end (the figures and seconds), epoch_end, message, warning, end;
- predict: start, progress (images finished), warning (an image skipped, an option unused), end
  (the summary);
- eval with a model: start, progress (images predicted), end.
"""

TRAIN_EVENTS = ("start", "epoch_start", "step", "val_start", "val_step", "val_end", "epoch_end", "message",
                "warning", "end")
PREDICT_EVENTS = ("start", "progress", "warning", "end")
EVAL_EVENTS = ("start", "progress", "end")
