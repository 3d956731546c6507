"""Jobs behind the commands; no typer and no printing here (the CLI layer shows results).

Three wings, one per model job, over a shared lower layer:

- ``core``: inference (one path for training validation, eval and predict), outputs to COCO
  records, scores, overlays, plots, run folders, annotation-file discovery, interruption,
  distributed helpers;
- ``train``, ``predict``, ``eval``: one package each; no wing imports another, except eval ->
  predict (eval with a model writes its predictions as predict does);
- ``convert``, ``stats``, ``split``: the dataset commands, one module each, on ``segcli.formats``.
"""
