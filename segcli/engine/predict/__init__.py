"""``segcli predict``: its options (``options``, free of torch so the CLI starts fast), the run
(``run``: output folder, resume, shards), how the work is split among processes (``shards``),
one shard's images predicted and finished on a writer thread (``finisher``), the resume journal
(``journal``) and the files written (``outputs``)."""
