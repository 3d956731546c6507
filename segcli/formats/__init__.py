"""Annotation formats: VIA 1/2/3, COCO and label-mask folders, read into and written from
``segcli.structures.Dataset``. ``segcli.formats.io`` detects a file's format and dispatches.
Nothing here imports torch."""
