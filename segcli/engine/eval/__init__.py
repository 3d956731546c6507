"""``segcli eval``: ground truth and prediction files (``inputs``), the run with its reports
(``run``) and the all-or-nothing output folder (``output``). With a model, eval predicts through
the shared inference path and writes predictions as ``segcli predict`` does (the one sideways
import of the engine: eval -> predict)."""
