"""The ``mpq`` command line: thin Typer commands over mpq's public API.

Errors are caught in one place (:func:`main`): one line on stderr, exit 2 for bad input
(``ValueError`` subclasses), 1 for a failed run, 130 on Ctrl-C; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperGroup

# Only what --help needs is imported here: each command imports mpq's modules (torch, pandas,
# SQLAlchemy) itself, so that `mpq --help` answers at once.
from mpq._defaults import DEFAULT_OBJECTIVES, DEFAULT_TARGET, EXAMPLES, this_cpu_target

#: Every built-in example as --model spells it, for the help texts.
_EXAMPLE_SPECS = " | ".join(f"example:{name}" for name in EXAMPLES)
#: The metavar of an option that names none, by its type's name: one word, as N, DROP and RUN
#: are (Typer would show ``<str>``, ``<int>``, ``<list[str]>``).
_METAVARS = {"int": "N", "float": "NUMBER", "str": "TEXT"}


def _no_type(ctx: object) -> None:
    return None


def _untyped_flags(params: list) -> list:
    """A flag takes no value: its help shows no type (Typer would show ``<bool>``); another
    option without a metavar shows one word for its type, an argument only its metavar."""
    for param in params:
        if getattr(param, "param_type_name", "") == "argument" and param.metavar:
            param.display_type_rich = _no_type  # its name says it (RUN): no "<int>" beside it
        if param.metavar is not None or getattr(param, "param_type_name", "") != "option":
            continue
        kind = param.bare_type().removeprefix("list[").removesuffix("]")  # a repeatable option: its item's
        param.metavar = "" if param.is_flag else _METAVARS.get(kind, kind.upper())
    return params


class _Stopped(Exception):
    """Ctrl-C or SIGTERM inside a command, carried past Typer, which turns a KeyboardInterrupt
    into a bare exit 130 and drops mpq's message (the run and its resume command)."""

    def __init__(self, interrupt: KeyboardInterrupt):
        super().__init__(str(interrupt))
        self.interrupt = interrupt


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that a run is stored as interrupted, resumable."""


def _terminate(signum, frame) -> None:
    raise _Terminated("SIGTERM")


class _Group(TyperGroup):
    """mpq's command groups: the flags of the group and of each of its commands show no type."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Stopped(exc) from exc

    def get_params(self, ctx):
        return _untyped_flags(super().get_params(ctx))

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is not None:
            _untyped_flags(command.get_params(ctx))
        return command


app = typer.Typer(
    name="mpq",
    help="Mixed-precision bit allocation: per-layer number formats on the Pareto frontier of a target device.",
    cls=_Group,
    rich_markup_mode="rich",  # help texts escape their literal brackets: \\[default: ...]
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Maintain a results store.", cls=_Group, rich_markup_mode="rich", no_args_is_help=True)
app.add_typer(db_app, name="db")

stdout = Console()
stderr = Console(stderr=True)
_state = {"debug": False}

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="MPQ_DB",
        metavar="STORE",
        help="Results store: a SQLite file or a SQLAlchemy URL \\[default: ~/.cache/mpq/mpq.db].",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the documented JSON shape instead of a table.")]
AllOption = Annotated[bool, typer.Option("--all", help="Show every validated point, not only the measured frontier.")]
WideOption = Annotated[
    bool,
    typer.Option("--wide", help="Show every column, wider than the terminal if need be (else some are left out)."),
]

#: torch's intra-op threads, for every command that runs a model (mpq._threads reads $MPQ_THREADS).
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="torch's intra-op threads for the probe, the evaluations, each worker and timing \\[default: "
        "$MPQ_THREADS, else 1].",
    ),
]


#: The text of a causal LM task (``--model hf:PATH``), for every command that builds one.
DataOption = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="FILE",
        help="hf:PATH only: text to calibrate on and measure perplexity on (plain text, or JSON lines with a "
        '"text" field) \\[default: the built-in corpus, the standard library\'s source].',
    ),
]
SeqLenOption = Annotated[
    int | None, typer.Option("--seq-len", metavar="N", help="hf:PATH only: tokens per sequence \\[default: 128].")
]
CalibrationTokensOption = Annotated[
    int | None,
    typer.Option(
        "--calibration-tokens", metavar="N", help="hf:PATH only: tokens of calibration text \\[default: 2048]."
    ),
]
HeldoutTokensOption = Annotated[
    int | None,
    typer.Option(
        "--heldout-tokens",
        metavar="N",
        help="hf:PATH only: tokens of held-out text the perplexity is measured on \\[default: 8192].",
    ),
]

ModelOption = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        metavar="SPEC",
        help=f"{_EXAMPLE_SPECS} | path/to/file.py[:factory] (factory default: make_task) | hf:PATH (a causal LM "
        "folder save_pretrained wrote, loaded offline).",
    ),
]
#: The task that rebuilds a stored run's model (a reader's --model): a store is data, so the file
#: it names is imported only when the user names it here or passes --trust-stored-model.
RebuildOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="SPEC",
        help="The task that rebuilds the run's model (path/to/file.py[:factory]), checked to build the run's model "
        "and data \\[default: the run's own when it is a built-in example].",
    ),
]
TrustStoredOption = Annotated[
    bool,
    typer.Option(
        "--trust-stored-model",
        help="Rebuild the run's model from the task file the store names (runs that file: only for a store you trust).",
    ),
]


def _rebuild_spec(run_id: int, stored: str | None, model: str | None, trust: bool) -> str | None:
    """The --model a command rebuilds a stored run's model from (see mpq._trust)."""
    from mpq._trust import stored_spec_to_build

    return stored_spec_to_build(run_id, stored, model, allowed=[stored] if trust and stored else ())


def _print_version(value: bool) -> None:
    if value:
        from mpq.version import __version__

        stdout.print(f"mpq {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print mpq's version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    _state["debug"] = debug


def _parse_drop(text: str | None) -> float | str | None:
    """``--max-drop``: a percentage stays text (mpq.search reads it), a number becomes a float."""
    if text is None or text.strip().endswith("%"):
        return text
    try:
        return float(text)
    except ValueError:
        return text  # mpq.search refuses it in one line, with the accepted forms


def _parse_budgets(values: list[str]) -> dict[str, float]:
    budgets = {}
    for text in values:
        name, sep, value = text.partition("=")
        try:
            budgets[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise typer.BadParameter(
                f"{text!r} is not NAME=VALUE; write e.g. --budget weight_bytes=2e5.", param_hint="--budget"
            )
    return budgets


@contextmanager
def _executor(workers: int | None, dask: str | None) -> Iterator[object]:
    """The executor of --workers or --dask (None without either), stopped after the search."""
    from mpq._executors import WORKERS, ProcessPool, close_executor, dask_executor
    from mpq._param_checks import check_param
    from mpq.exceptions import InvalidParameterError

    if workers is not None and dask is not None:
        raise InvalidParameterError("--workers and --dask: give one of the two (local processes, or a Dask cluster).")
    if workers is not None:
        check_param("search", "workers", workers, WORKERS)
        executor = ProcessPool(workers)
    elif dask is not None:
        logging.getLogger("distributed").setLevel(logging.ERROR)  # mpq's output holds only mpq's lines
        executor = dask_executor(dask)
    else:
        yield None
        return
    try:
        yield executor
    finally:
        close_executor(executor)


@app.command()
def search(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="SPEC",
            help=f"{_EXAMPLE_SPECS} | path/to/file.py[:factory] (factory default: make_task) | hf:PATH (a causal "
            "LM folder save_pretrained wrote, loaded offline) \\[default: example:digits-cnn; with --resume, the "
            "run's own].",
        ),
    ] = None,
    data: DataOption = None,
    seq_len: SeqLenOption = None,
    calibration_tokens: CalibrationTokensOption = None,
    heldout_tokens: HeldoutTokensOption = None,
    no_fuse: Annotated[
        bool,
        typer.Option(
            "--no-fuse",
            help="Choose each layer of a causal LM's fused sets (q/k/v, gate/up) on its own \\[default: one format "
            "per set in every point, as vLLM needs].",
        ),
    ] = False,
    target: Annotated[
        str,
        typer.Option(
            "--target", "-t", metavar="DEVICE", help="Device name (see 'mpq devices') or a device .toml path."
        ),
    ] = DEFAULT_TARGET,
    objective: Annotated[
        list[str], typer.Option("--objective", "-o", help="Cost to trade against the predicted loss; give one or two.")
    ] = list(DEFAULT_OBJECTIVES),  # noqa: B006
    budget: Annotated[
        list[str],
        typer.Option(
            "--budget",
            "-b",
            metavar="NAME=VALUE",
            help="Upper limit of a cost; any number; gives the one optimal point.",
        ),
    ] = [],  # noqa: B006
    candidates: Annotated[
        str | None, typer.Option(help="Comma-separated candidates \\[default: all the target runs].")
    ] = None,
    probe: Annotated[
        str | None,
        typer.Option(
            help="Sensitivity probe: hessian, fisher (true Fisher), efisher (empirical), measured (each layer alone at each candidate, the real loss), or hybrid (hessian, with the real loss of 2-3 bit candidates) \\[default: the task's, hessian but for a language model's efisher]."
        ),
    ] = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            help="Probe until no configuration the estimator's error makes plausible loses more than this fraction "
            "of its predicted loss against the frontier \\[default: 0.05].",
        ),
    ] = None,
    probe_tolerance: Annotated[
        float | None,
        typer.Option(
            metavar="REL",
            help="Probe until every layer's relative standard error is below this instead (the traces for their "
            "own sake; slower).",
        ),
    ] = None,
    max_samples: Annotated[int, typer.Option(help="Probe sample cap.")] = 200,
    max_points: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Validate at most N frontier configurations; the uniform baselines (one per candidate) and "
            "--refine's are measured besides.",
        ),
    ] = 20,
    batch_size: Annotated[int, typer.Option(help="Batch size the cost model assumes.")] = 1,
    measured: Annotated[
        str | None, typer.Option(help="Measured latency CSV (mpq measure --out) replacing the model's latency_s.")
    ] = None,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Skip evaluating the points on held-out data (proxy metric only).")
    ] = False,
    max_drop: Annotated[
        str | None,
        typer.Option(
            metavar="DROP",
            help="Find the cheapest configuration whose measured metric is within DROP of float: metric units (0.01) or a percentage of the float metric (1%).",
        ),
    ] = None,
    max_evals: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Evaluations of the task's metric to spend, the float model's included \\[default: every point; 50 with --max-drop].",
        ),
    ] = None,
    refine: Annotated[
        int, typer.Option(metavar="N", help="N more evaluations pushing the measured frontier to lower cost.")
    ] = 0,
    ranges: Annotated[
        str,
        typer.Option(
            metavar="METHOD",
            help="How the quantizer clips: mse (the range with the least squared error), max, or percentile.",
        ),
    ] = "mse",
    no_bias_correction: Annotated[
        bool,
        typer.Option(
            "--no-bias-correction",
            help="Keep the mean output shift that weight quantization causes \\[default: removed through each bias].",
        ),
    ] = False,
    strategy: Annotated[
        str | None,
        typer.Option(
            metavar="NAME[,NAME...]",
            help="How the evaluations are spent, in order: region, frontier, drop, refine, greedy, nsga2 \\[default: drop with --max-drop, frontier with --budget, else region; then refine with --refine or --max-evals].",
        ),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="Run the model there: cpu, cuda, cuda:1 \\[default: where the task's model is]."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(metavar="N", help="Run the evaluations and the measured probe on N local processes."),
    ] = None,
    dask: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Run the evaluations and the measured probe on the Dask scheduler at ADDRESS (tcp://host:8786).",
        ),
    ] = None,
    eval_timeout: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="End an evaluation that runs longer than this; --on-eval-timeout says what follows \\[default: no limit].",
        ),
    ] = None,
    on_eval_timeout: Annotated[
        str,
        typer.Option(
            metavar="stop|skip",
            help="After an evaluation past --eval-timeout: stop (the run fails, resumable) or skip (its configuration "
            "is recorded as not measured and the search goes on).",
        ),
    ] = "stop",
    all_points: AllOption = False,
    wide: WideOption = False,
    resume: Annotated[
        int | None,
        typer.Option(
            metavar="RUN", help="Finish an interrupted run (same --model); its other settings are the run's own."
        ),
    ] = None,
    trust_stored_model: TrustStoredOption = False,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start a new run even when an unfinished run of this same search is stored (else it is resumed).",
        ),
    ] = False,
    threads: ThreadsOption = None,
    db: DbOption = None,
    json: JsonOption = False,
) -> None:
    """Probe, cost, solve, validate and store; print the frontier and the run id."""
    import dataclasses

    import mpq
    from mpq._cli_render import StageProgress, dumps, print_run, run_json
    from mpq._probes import task_probes

    budgets = _parse_budgets(budget)
    family = probe or "hessian"  # without --probe, the task's default_probes once it is built
    probes = {"measured": ("measured",), "hybrid": ("hessian_w", "hessian_a", "measured")}.get(
        family, (f"{family}_w", f"{family}_a")
    )
    if tolerance is not None and probe_tolerance is not None:
        raise mpq.exceptions.InvalidParameterError(
            "--tolerance and --probe-tolerance: give one of the two (the frontier's stop rule, or every layer's)."
        )
    # The fewest samples a probe may take (2) at least, so that a --max-samples below it is refused
    # naming --max-samples, the flag the user gave.
    settings = mpq.ProbeSettings(
        probes=probes,
        tolerance=next((t for t in (probe_tolerance, tolerance) if t is not None), 0.05),
        stop="decision" if probe_tolerance is None else "tolerance",
        max_samples=max_samples,
        min_samples=max(2, min(10 if probe_tolerance is not None else 4, max_samples)),
    )
    if model is None and resume is not None:
        model = _rebuild_spec(resume, mpq.open_run(db, resume).record["model_spec"], None, trust_stored_model)
    with _executor(workers, dask) as executor:  # a bad --workers or --dask is refused before the task is built
        task = mpq.load_task(
            model or "example:digits-cnn",
            data=data,
            seq_len=seq_len,
            calibration_tokens=calibration_tokens,
            heldout_tokens=heldout_tokens,
        )
        if probe is None:
            settings = dataclasses.replace(settings, probes=task_probes(task))
        with StageProgress(stderr) as progress:
            run = mpq.search(
                task,
                target=target,
                objectives=objective,
                budgets=budgets,
                candidates=candidates.split(",") if candidates else None,
                settings=settings,
                batch_size=batch_size,
                measured=measured,
                max_points=max_points,
                validate=not no_validate,
                max_drop=_parse_drop(max_drop),
                max_evals=max_evals,
                refine=refine,
                ranges=ranges,
                bias_correction=not no_bias_correction,
                strategy=strategy,
                fuse=not no_fuse,
                device=device,
                executor=executor,
                db=db,
                resume=resume,
                fresh=fresh,
                progress=progress,
                eval_timeout=eval_timeout,
                on_eval_timeout=on_eval_timeout,
                threads=threads,
            )
    if json:
        stdout.print_json(dumps(run_json(run)))
    else:
        print_run(stdout, run, all_points=all_points, wide=wide)
        stdout.print(f"run id {run.id} in {run.db}", soft_wrap=True)


@app.command()
def runs(db: DbOption = None, json: JsonOption = False, wide: WideOption = False) -> None:
    """List the runs in a store."""
    import mpq
    from mpq._cli_render import dumps, print_runs, table_json

    table = mpq.list_runs(db)
    if json:
        stdout.print_json(dumps(table_json(table)))
    elif table.empty:
        stdout.print("no runs yet; start one with 'mpq search'.")
    else:
        print_runs(stdout, table, wide=wide)
        for run_id in table.loc[table["status"].isin(["failed", "stopped"]), "run"]:
            stdout.print(f"run {run_id} did not finish: 'mpq search --resume {run_id}' (same --db) finishes it.")


@app.command()
def show(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    db: DbOption = None,
    json: JsonOption = False,
    all_points: AllOption = False,
    wide: WideOption = False,
) -> None:
    """Show a run: its settings, frontier and per-layer table."""
    import mpq
    from mpq._cli_render import dumps, plain, print_layers, print_parts, print_run, show_json

    run = mpq.open_run(db, run_id)
    if json:
        stdout.print_json(dumps(show_json(run)))
        return
    record = run.record
    print_parts(
        stdout,
        [
            f"run {run.id}: task {plain(record['task_name'])} (model {record['model_hash'][:12]}, data {record['data_hash'][:12]})",
            f"target {run.target}",
            f"objectives {', '.join(run.objectives)}",
            f"budgets {record['budgets'] or 'none'}",
            f"created {record['created_at']:%Y-%m-%d %H:%M} UTC",
            *([f"torch threads {record['settings']['threads']}"] if "threads" in record["settings"] else []),
        ],
        sep=", ",
    )
    if "layers" in run.tables:
        print_layers(stdout, run.tables["layers"], wide=wide)
    print_run(stdout, run, all_points=all_points, wide=wide)


@app.command()
def frontier(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    db: DbOption = None,
    json: JsonOption = False,
    all_points: AllOption = False,
    wide: WideOption = False,
) -> None:
    """Print a run's frontier (with --json: the stable JSON shape)."""
    import mpq
    from mpq._cli_render import dumps, print_run, run_json

    run = mpq.open_run(db, run_id)
    if json:
        stdout.print_json(dumps(run_json(run)))
    else:
        print_run(stdout, run, all_points=all_points, wide=wide)


@app.command()
def export(
    run_id: Annotated[int, typer.Argument(metavar="RUN")],
    point: Annotated[int, typer.Option(metavar="K", help="The point to export (see 'mpq frontier RUN').")],
    to: Annotated[
        str,
        typer.Option(
            help="json (layer -> formats), hawq (HAWQ-V3 bit_config), compressed-tensors (the quantization_config "
            "llm-compressor and vLLM read), onnx (a model with QuantizeLinear/DequantizeLinear, for ONNX Runtime) or "
            "qonnx (Quant nodes, for FINN)."
        ),
    ] = "json",
    out: Annotated[
        str | None, typer.Option(help="Write to this file instead of stdout (required for onnx and qonnx).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists (else refused).")] = False,
    checkpoint: Annotated[
        str | None,
        typer.Option(
            metavar="DIR",
            help="With --to compressed-tensors: write the quantized checkpoint itself to this new folder (packed "
            "weights, scales, config.json, tokenizer), which transformers and vLLM load; the model is rebuilt.",
        ),
    ] = None,
    model: RebuildOption = None,
    trust_stored_model: TrustStoredOption = False,
    threads: ThreadsOption = None,
    db: DbOption = None,
) -> None:
    """Export one point of a run for another tool."""
    import mpq
    from mpq._cli_render import dumps
    from mpq._export import FILE_FORMATS
    from mpq._files import check_new_file, write_text_atomically
    from mpq._threads import resolve_threads, torch_threads

    threads = resolve_threads("export", threads)
    run = mpq.open_run(db, run_id)
    if out:
        check_new_file(out, force)
    if to in FILE_FORMATS:  # these rebuild and run the model
        spec = _rebuild_spec(run.id, run.record["model_spec"], model, trust_stored_model)
        with torch_threads(threads):
            stdout.print(f"wrote {run.export(point, to, out, model=spec)}", soft_wrap=True)
        return
    if checkpoint is not None:
        spec = _rebuild_spec(run.id, run.record["model_spec"], model, trust_stored_model)
        stdout.print(f"wrote {run.export(point, to, out, model=spec, checkpoint=checkpoint)}", soft_wrap=True)
        return
    text = dumps(run.export(point, to))
    if out:
        write_text_atomically(out, text + "\n")
        stdout.print(f"wrote {out}", soft_wrap=True)
    else:
        print(text)


@app.command()
def compare(
    first: Annotated[int, typer.Argument(metavar="RUN")],
    second: Annotated[int, typer.Argument(metavar="RUN")],
    points: Annotated[
        str | None,
        typer.Option(help="K,L: the points of the two runs to diff per layer \\[default: each run's best]."),
    ] = None,
    db: DbOption = None,
    json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """What differs between two runs: settings, frontiers, and the layers two points set apart."""
    import mpq
    from mpq._cli_render import dumps, print_compare, table_json
    from mpq._compare import setting_differences

    runs = mpq.open_run(db, first), mpq.open_run(db, second)
    chosen = None
    if points:
        try:
            chosen = tuple(int(p) for p in points.split(","))
        except ValueError:
            chosen = ()
        if len(chosen) != 2:
            raise typer.BadParameter(f"{points!r} is not K,L; write e.g. --points 3,5.", param_hint="--points")
    frontiers, layers = mpq.compare(*runs, points=chosen)
    if json:
        stdout.print_json(
            dumps(
                {
                    "settings": table_json(setting_differences(*runs)),
                    "frontiers": table_json(frontiers),
                    "points": list(layers.attrs["points"]),
                    "layers": table_json(layers),
                }
            )
        )
    else:
        print_compare(stdout, *runs, layers, wide=wide)


@app.command()
def devices(json: JsonOption = False) -> None:
    """List the target devices and the candidates each runs."""
    import hwmodels
    from mpq._cli_render import dumps, print_table, table_json

    table = hwmodels.list_devices().drop(columns=["path"])
    if json:
        stdout.print_json(dumps(table_json(table)))
    else:
        print_table(stdout, table, wrap=["description", "candidates"])


@app.command("probe")
def probe_command(
    model: ModelOption = "example:digits-cnn",
    data: DataOption = None,
    seq_len: SeqLenOption = None,
    calibration_tokens: CalibrationTokensOption = None,
    heldout_tokens: HeldoutTokensOption = None,
    probes: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated probes: hessian_w, hessian_a, fisher_w, fisher_a, efisher_w, efisher_a "
            "\\[default: the task's, hessian_w,hessian_a but for a language model's efisher_w,efisher_a]."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Stop when every layer's relative standard error is below this.")
    ] = 0.05,
    max_samples: Annotated[int, typer.Option(help="Sample cap per probe family.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the random probes.")] = 0,
    device: Annotated[
        str | None,
        typer.Option(help="Run the model there: cpu, cuda, cuda:1 \\[default: where the task's model is]."),
    ] = None,
    threads: ThreadsOption = None,
    db: DbOption = None,
    json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """Measure per-layer sensitivity and print it with standard errors (resumable: samples are checkpointed in the store)."""
    import dataclasses

    import mpq
    from mpq._cli_render import StageProgress, dumps, print_table, table_json
    from mpq._placement import check_device
    from mpq._probes import task_probes
    from mpq._storage import open_store

    chosen = tuple(p.strip() for p in probes.split(",")) if probes is not None else mpq.ProbeSettings.probes
    settings = mpq.ProbeSettings(probes=chosen, tolerance=tolerance, max_samples=max_samples, seed=seed)
    check_device("probe", device)  # before the model is built
    task = mpq.load_task(
        model, data=data, seq_len=seq_len, calibration_tokens=calibration_tokens, heldout_tokens=heldout_tokens
    )
    if probes is None:
        settings = dataclasses.replace(settings, probes=task_probes(task))
    store = open_store(db, "write", create=True)
    with StageProgress(stderr) as progress:
        table = mpq.probe(
            task,
            settings=settings,
            device=device,
            checkpoint=store,
            progress=lambda done, total, message: progress("probe", done, total, message),
            threads=threads,
        )
    if json:
        stdout.print_json(dumps(table_json(table)))
    else:
        print_table(
            stdout,
            table,
            title=f"sensitivity of {task.name}",
            optional=["seconds", "backwards", "hvps", "n_params", "converged", "n_samples"],
            wide=wide,
        )


@app.command()
def measure(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="SPEC",
            help=f"{_EXAMPLE_SPECS} | path/to/file.py[:factory] (factory default: make_task); with --run, the task "
            "that rebuilds the run's model \\[default: example:digits-cnn; with --run, the run's own when it is a "
            "built-in example].",
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            metavar="DEVICE",
            help="Device whose candidates to time \\[default: this machine's CPU: cpu-x86-avx2 on a core with AVX2 "
            f"but no VNNI or AMX, else cpu-x86; here {this_cpu_target()}].",
        ),
    ] = None,
    candidates: Annotated[
        str | None, typer.Option(help="Comma-separated candidates \\[default: the target's].")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size to time at.")] = 1,
    device: Annotated[str, typer.Option(help="cpu, cuda, or auto (cuda when available).")] = "auto",
    warmup: Annotated[int, typer.Option(help="Untimed runs before timing.")] = 3,
    repeats: Annotated[int, typer.Option(help="Timed runs per (layer, candidate).")] = 20,
    out: Annotated[str | None, typer.Option(help="Write the CSV that 'mpq search --measured' reads.")] = None,
    runtime: Annotated[
        str,
        typer.Option(
            help="torch (every layer at every candidate) or onnxruntime (a run's point exported to ONNX, timed "
            "end to end and per node; give --run and --point)."
        ),
    ] = "torch",
    run_id: Annotated[
        int | None, typer.Option("--run", metavar="RUN", help="The run whose point onnxruntime times.")
    ] = None,
    point: Annotated[
        int | None, typer.Option(metavar="K", help="The point onnxruntime times (see 'mpq frontier RUN').")
    ] = None,
    nodes: Annotated[
        bool,
        typer.Option(
            "--nodes", "-v", help="With --runtime onnxruntime: the per-node table too, after the end-to-end figure."
        ),
    ] = False,
    all_points: Annotated[
        bool,
        typer.Option(
            "--all-points",
            help="With --runtime onnxruntime: time every point of the run end to end and store the latency with "
            "the run ('mpq show' shows it beside the prediction).",
        ),
    ] = False,
    trust_stored_model: TrustStoredOption = False,
    threads: ThreadsOption = None,
    db: DbOption = None,
    json: JsonOption = False,
    wide: WideOption = False,
) -> None:
    """Time every layer at every candidate on this machine (warm-up, repeats, spread), or with
    --runtime onnxruntime a run's point exported to ONNX, end to end and per node."""
    import torch

    import hwmodels
    import mpq
    from mpq._cli_render import StageProgress, dumps, print_table, table_json
    from mpq._param_checks import unknown_name
    from mpq._threads import resolve_threads, torch_threads

    if runtime not in ("torch", "onnxruntime"):
        raise unknown_name("runtime", runtime, ["torch", "onnxruntime"])
    threads = resolve_threads("measure", threads)
    if runtime == "onnxruntime":  # ONNX Runtime takes torch's thread count (mpq._onnx_latency)
        with torch_threads(threads):
            _measure_onnxruntime(
                run_id, point, all_points, model, trust_stored_model, db, batch_size, warmup, repeats, json, wide, nodes
            )
        return
    target = target or this_cpu_target()
    names = candidates.split(",") if candidates else list(hwmodels.load_device(target).candidates)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    task = mpq.load_task(model or "example:digits-cnn")
    with StageProgress(stderr) as progress, torch_threads(threads):
        table = mpq.measure_latency(
            task,
            names,
            batch_size=batch_size,
            device=device,
            warmup=warmup,
            repeats=repeats,
            progress=lambda done, total, message: progress("measure", done, total, message),
        )
    if out:
        mpq.write_measured_csv(table, out)
    if json:
        stdout.print_json(dumps(table_json(table)))
        return
    view = table.assign(
        median_us=table.latency_s * 1e6,
        std_us=table.latency_std_s * 1e6,
        min_us=table.latency_min_s * 1e6,
        max_us=table.latency_max_s * 1e6,
        dequant_us=table.dequant_s * 1e6,
    )[["layer", "candidate", "median_us", "std_us", "min_us", "max_us", "dequant_us", "kernel"]]
    print_table(
        stdout,
        view,
        title=f"{task.name} on {device}, batch {batch_size}, {threads} threads",
        optional=["max_us", "min_us", "dequant_us", "kernel", "std_us"],
        wide=wide,
    )
    if out:
        stdout.print(
            f"wrote {out}; use it with 'mpq search --measured {out} --target {target} --batch-size {batch_size}'."
        )


def _measure_onnxruntime(
    run_id: int | None,
    point: int | None,
    all_points: bool,
    model: str | None,
    trust_stored_model: bool,
    db: str | None,
    batch_size: int,
    warmup: int,
    repeats: int,
    json: bool,
    wide: bool,
    show_nodes: bool,
) -> None:
    import mpq
    from mpq._cli_render import dumps, print_table, table_json
    from mpq._onnx_latency import onnxruntime_latency
    from mpq.exceptions import InvalidParameterError

    if run_id is None or (point is None) == (not all_points):
        raise InvalidParameterError(
            "measure --runtime onnxruntime times one point of a run, or all of them: give --run RUN and "
            "--point K or --all-points (see 'mpq frontier RUN')."
        )
    run = mpq.open_run(db, run_id)
    spec = _rebuild_spec(run.id, run.record["model_spec"], model, trust_stored_model)
    if all_points:
        _measure_all_points(run, spec, batch_size, warmup, repeats, json, wide)
        return
    end_to_end, nodes = onnxruntime_latency(
        run, point, batch_size=batch_size, warmup=warmup, repeats=repeats, model=spec
    )
    if json:
        stdout.print_json(dumps({"end_to_end": end_to_end, "nodes": table_json(nodes)}))
        return
    stdout.print(
        f"run {run.id} point {point} in {end_to_end['runtime']}, batch {batch_size}, end to end: median "
        f"{end_to_end['latency_s'] * 1e6:.1f} us, std {end_to_end['latency_std_s'] * 1e6:.1f} us, min "
        f"{end_to_end['latency_min_s'] * 1e6:.1f} us, max {end_to_end['latency_max_s'] * 1e6:.1f} us over "
        f"{end_to_end['repeats']} runs" + ("" if show_nodes else f"; --nodes shows the {len(nodes)} nodes' times"),
        soft_wrap=True,
    )
    if show_nodes:
        view = nodes.assign(median_us=nodes.latency_s * 1e6, share_pct=nodes.share * 100)
        print_table(
            stdout,
            view[["node", "op_type", "median_us", "share_pct"]],
            title="per node (profiler)",
            optional=["share_pct"],
            wide=wide,
        )


def _measure_all_points(
    run, spec: str | None, batch_size: int, warmup: int, repeats: int, json: bool, wide: bool
) -> None:
    from mpq._cli_render import StageProgress, dumps, frontier_view, print_table, table_json
    from mpq._onnx_latency import measure_points

    with StageProgress(stderr) as progress:
        table = measure_points(
            run,
            batch_size=batch_size,
            warmup=warmup,
            repeats=repeats,
            model=spec,
            progress=lambda done, total, message: progress("onnxruntime", done, total, message),
        )
    if json:
        stdout.print_json(dumps(table_json(table)))
        return
    print_table(
        stdout,
        frontier_view(run, all_points=True),
        title=f"run {run.id} in {table['runtime'].iloc[0]}, batch {batch_size}, end to end (median of {repeats})",
        optional=["label", "formats"],
        wide=wide,
    )
    stdout.print(f"stored with run {run.id}: 'mpq show {run.id}' shows it beside the prediction.")


@app.command()
def dashboard(
    db: DbOption = None,
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8501,
    address: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 shares it on the network.")] = "127.0.0.1",
    headless: Annotated[
        bool,
        typer.Option(
            "--headless/--open-browser", help="Only serve (the default), or also open a browser tab on the dashboard."
        ),
    ] = True,
    choose_store: Annotated[
        bool,
        typer.Option(
            "--choose-store",
            help="Let the page pick any store this server can reach (else it shows --db and nothing else).",
        ),
    ] = False,
    allow_model: Annotated[
        list[str],
        typer.Option(
            metavar="SPEC",
            help="A task (path/to/file.py:make_task) whose runs' models Build may rebuild: it imports that file "
            "(repeatable; built-in examples need none).",
        ),
    ] = [],  # noqa: B006
) -> None:
    """Serve the Streamlit dashboard on a store: runs, frontiers, comparisons, exports (read only)."""
    import importlib.util
    import os
    from pathlib import Path

    import mpq
    from mpq._trust import canonical_spec

    # One resolver: the checkout's app/ beside the mpq package, else the copy a wheel ships as
    # package data (mpq/_dashboard, mapped from app/ in pyproject.toml).
    package = Path(mpq.__file__).resolve().parent
    candidates = (package.parent / "app" / "streamlit_app.py", package / "_dashboard" / "streamlit_app.py")
    script = next((path for path in candidates if path.is_file()), None)
    if script is None:
        raise mpq.MpqError(
            f"the dashboard app is missing: neither {candidates[0]} nor {candidates[1]} exists; reinstall mpq."
        )
    if importlib.util.find_spec("streamlit") is None:
        raise mpq.MpqError("mpq dashboard needs the [dashboard] extra; run 'pip install mpq[dashboard]'.")
    mpq.list_runs(db)  # a store that cannot be read fails here, in one line, before a server starts
    command = [
        sys.executable,
        # -P (safe_path): `-m` would put the working directory first on sys.path, and a folder there
        # named mpq (a checkout, say) would shadow the installed package in the server.
        "-P",
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.port",
        str(port),
        "--server.address",
        address,
        "--server.headless",
        str(headless).lower(),
        # Streamlit's first start otherwise stops at an email prompt (and, stdin closed, never serves).
        "--server.showEmailPrompt",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--",
        *(["--db", db] if db else []),
        *(["--choose-store"] if choose_store else []),
        *(arg for spec in allow_model for arg in ("--allow-model", canonical_spec(spec))),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)  # the server replaces this process: signals and exit code are its own


@db_app.command("upgrade")
def db_upgrade(db: DbOption = None) -> None:
    """Migrate a store written by an older mpq to this mpq's schema, keeping every run."""
    from mpq._storage import Store

    store = Store.upgrade(db)
    if store.upgraded_from is None:
        stdout.print(f"{store.where} is at the current schema {store.schema}; nothing to upgrade.")
    else:
        stdout.print(f"{store.where} upgraded from schema {store.upgraded_from} to {store.schema}, keeping every run.")


def _fail(message: str, code: int) -> int:
    stderr.print(f"mpq: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return code


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    stderr.print(f"mpq: warning: {message}", markup=False, highlight=False, soft_wrap=True)


class _LogLines(logging.Handler):
    """mpq's log records of WARNING and above (a store upgraded to write to it...) as one
    ``mpq: warning:`` line each, like Python warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        _show_warning(record.getMessage(), None, None, None)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``mpq`` script."""
    import warnings

    log, lines = logging.getLogger("mpq"), _LogLines()
    log.addHandler(lines)
    # SIGTERM (a scheduler's stop, `kill`) stops a run as Ctrl-C does: stored, resumable, said so.
    own_signals = threading.current_thread() is threading.main_thread()  # only there can Python set them
    terminate = signal.signal(signal.SIGTERM, _terminate) if own_signals else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one line, not a source location inside Typer
            _main(argv)
    finally:
        if own_signals:
            signal.signal(signal.SIGTERM, terminate)
        log.removeHandler(lines)


def _failures() -> tuple[type[Exception], ...]:
    """The errors reported in one line: mpq's, the solvers' and the cost models'. Called only once
    an error is raised, so that `mpq --help` loads neither package (nor pandas)."""
    import hwmodels
    import solvers
    from mpq.exceptions import MpqError

    return MpqError, solvers.SolverError, hwmodels.HwModelError


def _main(argv: list[str] | None) -> None:
    from mpq.exceptions import MpqError

    try:
        code = app(args=argv, prog_name="mpq", standalone_mode=False)  # a typer.Exit comes back as its code
        if code:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt, _Stopped) as exc:
        interrupt = exc.interrupt if isinstance(exc, _Stopped) else exc
        terminated = isinstance(interrupt, _Terminated) or isinstance(interrupt.__cause__, _Terminated)
        message = (
            str(interrupt)
            if isinstance(interrupt, MpqError)
            else f"{'terminated (SIGTERM)' if terminated else 'interrupted'}; probe samples already taken are saved: "
            "run the same command again to resume them."
        )
        sys.exit(_fail(message, 143 if terminated else 130))
    except typer.TyperException as exc:  # usage errors: Typer shows them with the usage line
        exc.show()
        sys.exit(exc.exit_code)
    except _failures() as exc:
        if _state["debug"]:
            traceback.print_exc()
        sys.exit(_fail(str(exc), 2 if isinstance(exc, ValueError) else 1))


if __name__ == "__main__":
    main()
