"""Jobs behind the commands (convert, stats, train, predict, eval): loops and orchestration.
No typer and no printing here; the CLI layer shows results."""
