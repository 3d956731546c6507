"""segcli: convert, train, predict and evaluate image segmentation datasets from the command line.

The package is layered: ``cli`` parses options and prints, ``engine`` runs jobs, ``formats``
reads and writes annotation files into the in-memory model of ``structures``. Imports flow one
way (cli -> engine -> formats/models/data -> structures, errors).
"""

__version__ = "0.1.0"
