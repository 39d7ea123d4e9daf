"""Human review commands: annotate serve | push | pull (Label Studio)."""

from __future__ import annotations

from pathlib import Path

import typer

from semanticseg.commands.common import REVIEW, check_categories, console, default_of, fail, given, option, progress_bar

app = typer.Typer()  # this module's commands; cli.py merges them into the `semanticseg` app

annotate = typer.Typer(
    help=(
        "Human review of disputed documents in a real Label Studio.\n\n"
        "Loop: `semanticseg annotate serve` (once), `semanticseg annotate push --category code`, review the "
        "tasks in the browser, `semanticseg annotate pull --category code` (as often as you like)."
    ),
    no_args_is_help=True,
)
app.add_typer(annotate, name="annotate", rich_help_panel=REVIEW)

_SERVE = "semanticseg.servers.labelstudio_server:serve"  # its keyword defaults are `annotate serve`'s
WORK = typer.Option(Path("work"), "--work", help="Work root: category folders and the Label Studio data (WORK/labelstudio) live here.")
CATEGORY = typer.Option(..., "--category", "-c", callback=check_categories, help="Category whose WORK/<category>/consensus.parquet is reviewed, e.g. code.")
URL = typer.Option(None, "--url", help="Label Studio URL; else $LABEL_STUDIO_URL, else the server `annotate serve` started.")
API_KEY = typer.Option(None, "--api-key", help="API token, legacy or personal access token; else $LABEL_STUDIO_API_KEY, else the one `annotate serve` made.")
PROJECT = typer.Option(None, "--project", help="Project title; else 'SemanticSeg review: <category>'.")


def _server_dir(work: Path) -> Path:
    from semanticseg.servers.labelstudio_server import server_dir

    return server_dir(work)


def _connection(work: Path, url: str | None, api_key: str | None) -> tuple[str, str]:
    """Flags, else environment, else the credentials `annotate serve` kept under the work root."""
    from semanticseg.servers.labelstudio_server import connection

    url, api_key = connection(work, url, api_key)
    if not url:
        raise fail("no Label Studio URL: pass --url, set LABEL_STUDIO_URL, or run `semanticseg annotate serve` first")
    return url, api_key


def _category_dir(work: Path, category: str) -> Path:
    folder = work / category
    if not (folder / "consensus.parquet").exists():
        raise fail(f"{folder / 'consensus.parquet'} does not exist: run `semanticseg adjudicate --category {category}` first")
    return folder


def _report(summary, counts: str) -> None:
    """One line of counts, then every skip with its reason (they are retried on the next run)."""
    console.print(f"project {summary.project_id}: {counts}, {len(summary.skipped)} skipped")
    for skip in summary.skipped:
        console.print(f"  skipped {skip}")


@annotate.command("serve")
def serve_cmd(
    work: Path = WORK,
    port: int | None = option(_SERVE, "port", "--port", help="Port to serve on."),
    bind: str | None = option(
        _SERVE, "bind", "--bind",
        help="Address to listen on. The default, loopback, admits only this machine; 0.0.0.0 opens the login page "
        "to every machine that can reach this one (for a team on a trusted network; a warning is printed).",
    ),
    stop: bool = typer.Option(False, "--stop", help="Stop the server started for this work root instead."),
    timeout: float | None = option(_SERVE, "timeout_s", "--timeout", help="Seconds to wait for /health (first start takes about a minute)."),
) -> None:
    """Start a local Label Studio (own virtualenv, preset admin and token, no browser) and wait until healthy.

    Username, password and token come from LABEL_STUDIO_USERNAME / LABEL_STUDIO_PASSWORD /
    LABEL_STUDIO_API_KEY, else are generated once, printed, and kept in WORK/labelstudio/credentials.json.
    Running it again reuses the server of this work root; a port held by anything else is an error.

    Examples: `semanticseg annotate serve`, `semanticseg annotate serve --bind 0.0.0.0`,
    `semanticseg annotate serve --stop`
    """
    from semanticseg.servers import labelstudio_server

    port = port if port is not None else default_of(_SERVE, "port")
    bind = bind if bind is not None else default_of(_SERVE, "bind")
    if stop:
        stopped = labelstudio_server.stop(_server_dir(work))
        console.print("stopped Label Studio" if stopped else "no Label Studio was running for this work root")
        return
    try:
        labelstudio_server.check_bind(bind)
    except ValueError as error:
        raise fail(str(error)) from None
    if not labelstudio_server.is_loopback(bind):
        console.print(
            f"[bold yellow]warning:[/] listening on {bind}, not loopback: every machine that reaches this one on port "
            f"{port} gets Label Studio's login page. Use strong passwords, and only on a network you trust."
        )
    console.print(f"starting Label Studio on {bind}:{port} (installs it into {labelstudio_server.venv_dir()} on first use) …")
    try:
        creds, generated = labelstudio_server.serve(_server_dir(work), port=port, bind=bind, **given(timeout_s=timeout))
    except RuntimeError as error:
        raise fail(str(error)) from None
    console.print(f"Label Studio is up at [bold]{creds.url}[/] (data: {_server_dir(work)})")
    if generated:
        console.print(f"log in as {creds.username} / {creds.password}; API token {creds.token} (kept in credentials.json)")
    print(creds.url)


@annotate.command("push")
def push_cmd(
    category: str = CATEGORY,
    work: Path = WORK,
    url: str = URL,
    api_key: str = API_KEY,
    project: str = PROJECT,
    context_chars: int | None = option("semanticseg.dataset.review:ReviewStage", "context_chars", "--context-chars", help="Characters of context shown each side of a disputed candidate (whole lines)."),
    reset_config: bool = typer.Option(False, "--reset-config", help="Overwrite a labeling config edited by hand with annotation/labelstudio_config.xml."),
    reviewers: int = typer.Option(
        None, "--reviewers", min=1,
        help="People who review each task (Label Studio's overlap); pull merges them by majority and measures their "
        "agreement. Default: 1 for a new project, else the project's current setting.",
    ),
) -> None:
    """Send the disputed windows of a category's documents to Label Studio as tasks (idempotent).

    Each annotator's proposal and the consensus are loaded as predictions. Prints the project's URL.
    Examples: `semanticseg annotate push --category code`,
    `semanticseg annotate push --category code --reviewers 2`
    """
    from semanticseg.dataset.review import ReviewError, ReviewStage
    from semanticseg.dataset.stage import run_stage

    folder = _category_dir(work, category)
    url, api_key = _connection(work, url, api_key)
    stage = ReviewStage(url, api_key, ("push",), project, reset_config=reset_config, reviewers=reviewers, **given(context_chars=context_chars))
    try:
        with progress_bar() as progress:
            summary = run_stage(stage, folder, progress)["push"]
    except ReviewError as error:
        raise fail(str(error)) from None
    per_task = f", {summary.reviewers} reviewers per task" if summary.reviewers > 1 else ""
    _report(summary, f"{summary.pushed} tasks pushed, {summary.already_there} already there{per_task}")
    console.print(f"review at [bold]{summary.project_url}[/]")


@annotate.command("pull")
def pull_cmd(
    category: str = CATEGORY,
    work: Path = WORK,
    url: str = URL,
    api_key: str = API_KEY,
    project: str = PROJECT,
) -> None:
    """Fetch submitted reviews into WORK/<category>/human.parquet and merge them into the consensus.

    A human decision always wins; with several reviewers per task, a task waits for all of them and the
    decision is what most of them cut (within adjudicate's tolerance), their agreement kept per document.
    Unreviewed tasks stay queued; unusable annotations are listed as
    skips in labelstudio_pull.json and retried by the next pull. Example:
    `semanticseg annotate pull --category code`
    """
    from semanticseg.dataset.review import ReviewError, ReviewStage
    from semanticseg.dataset.stage import run_stage

    folder = _category_dir(work, category)
    url, api_key = _connection(work, url, api_key)
    try:
        summary = run_stage(ReviewStage(url, api_key, ("pull",), project), folder)["pull"]
    except ReviewError as error:
        raise fail(str(error)) from None
    waiting = f" ({summary.waiting_for_reviewers} waiting for more of the {summary.reviewers} reviewers)" if summary.waiting_for_reviewers else ""
    _report(summary, f"{summary.pulled} reviewed, {summary.queued} still queued{waiting}")
