"""The engine's shared lower layer, used by the three jobs above it (train, predict, eval):
inference (``inference.Predictor``: decoding, the model's input scale, batching, outputs at
the original size), model outputs to COCO records and results (``results``), the scores
(``metrics``), overlays and plots, run folders and annotation-file discovery, interruption and
the distributed process group. Nothing here imports a job."""
