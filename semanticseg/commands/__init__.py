"""CLI commands by area; each module holds its commands on its own Typer `app`, which cli.py merges."""
