"""CLI commands by area; each module registers its commands on semanticseg.cli.app."""
