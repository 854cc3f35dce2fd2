"""Past one process: evaluations on an executor store what the serial run stores, point for point;
a worker that dies is retried once; what a user can get wrong is refused before anything is
stored; a device runs the same code path as the CPU."""

import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import torch

import mpq
from mpq import _executors
from mpq._heldout import evaluate_configuration
from mpq._storage import Store
from mpq.cli import main
from mpq.exceptions import InvalidParameterError, SearchInterrupted, TaskSpecError, WorkerError

TASKS = Path(__file__).parents[1] / "assets" / "tasks"
TINY = f"{TASKS / 'tiny_task.py'}:make_task"
DYING = f"{TASKS / 'dying_task.py'}:make_task"
#: The measured probe (its pairs run on the executor), the validation and the refinement.
SEARCH = dict(settings=mpq.ProbeSettings(probes=("measured",)), max_points=4, refine=3)


def stored(run: mpq.Run, db) -> tuple:
    """What a run stored that a parallel run must store alike: frontier rows, configurations,
    evaluations, the probe's values."""
    frontier = run.frontier.reset_index(drop=True)
    sensitivity = Store(db).run_tables(run.id)["sensitivity"][["layer", "candidate", "value", "stderr"]]
    return frontier, {int(p): run.assignment(int(p)) for p in frontier.point}, run.record["evaluations"], sensitivity


def assert_same(first: tuple, second: tuple) -> None:
    pd.testing.assert_frame_equal(first[0], second[0])
    assert first[1:3] == second[1:3]
    pd.testing.assert_frame_equal(first[3], second[3])


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    db = tmp_path_factory.mktemp("serial") / "mpq.db"
    run = mpq.search(mpq.load_task(TINY), db=db, device="cpu", **SEARCH)
    assert run.record["settings"]["device"] == "cpu" and run.record["settings"]["executor"] is None
    return stored(run, db)


def test_threads_store_the_serial_run_point_for_point(serial, tmp_path, capsys):
    db = tmp_path / "mpq.db"
    with ThreadPoolExecutor(2) as pool:
        run = mpq.search(mpq.load_task(TINY), db=db, executor=pool, **SEARCH)
    assert run.record["settings"]["executor"] == "ThreadPoolExecutor"
    assert_same(stored(run, db), serial)
    main(["show", str(run.id), "--db", str(db)])
    assert "status done; ran on cpu with ThreadPoolExecutor;" in capsys.readouterr().out


def test_a_search_on_an_executor_hashes_its_task_once(tmp_path, monkeypatch):
    """The weights (and with them the data) are hashed once a search (its identity), not again by
    the runner and the probe (four times before); a worker rebuilds and hashes its own copy."""
    from mpq._probes import checkpoint
    from mpq._search import identity

    task, hashed, original = mpq.load_task(TINY), [], checkpoint.model_hash

    def counting(model):
        if model is task.model:
            hashed.append(model)
        return original(model)

    for module in (checkpoint, identity):
        monkeypatch.setattr(module, "model_hash", counting)
    with ThreadPoolExecutor(2) as pool:
        mpq.search(task, db=tmp_path / "mpq.db", executor=pool, **SEARCH)
    assert len(hashed) == 1


@pytest.mark.slow  # worker processes start twice (20 s on 2 busy cores); the fast twins: threads, the retry below
def test_a_process_pool_whose_worker_dies_stores_the_serial_run(serial, tmp_path, monkeypatch):
    monkeypatch.setenv("MPQ_TEST_KILL_WORKER", str(tmp_path))
    db = tmp_path / "mpq.db"
    with mpq.ProcessPool(2) as pool:
        run = mpq.search(mpq.load_task(DYING), db=db, executor=pool, **SEARCH)
    assert (tmp_path / "killed").exists()  # a worker died mid-run; its evaluation ran again
    assert run.record["settings"]["executor"] == "processes x2"
    assert_same(stored(run, db), serial)


@pytest.mark.slow  # a cluster starts in seconds; the fast twins: the thread pool's, and the retry's below
def test_a_dask_cluster_whose_worker_dies_stores_the_serial_run(serial, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed", reason="needs the scale extra: pip install -e '.[scale]'")
    monkeypatch.setenv("MPQ_TEST_KILL_WORKER", str(tmp_path))
    db = tmp_path / "mpq.db"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        executor = _executors.dask_executor(cluster.scheduler_address)
        try:
            run = mpq.search(mpq.load_task(DYING), db=db, executor=executor, **SEARCH)
        finally:
            _executors.close_executor(executor)
    assert (tmp_path / "killed").exists()
    assert run.record["settings"]["executor"] == f"dask {cluster.scheduler_address}"
    assert_same(stored(run, db), serial)


class Failing(Executor):
    """Runs calls here, at once; the first ``times`` evaluations (every call with ``everything``)
    fail with ``error`` instead."""

    def __init__(self, error: BaseException, times: int = 10**9, everything: bool = False):
        self.error, self.times, self.everything, self.failed = error, times, everything, 0

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        if self.everything or (args[0] is evaluate_configuration and self.failed < self.times):
            self.failed += 1
            future.set_exception(self.error)
        else:
            future.set_result(fn(*args, **kwargs))
        return future


LOST = _executors.BrokenExecutor("A process in the process pool was terminated abruptly")


class Refusing(Failing):
    """Failing, whose failures are raised by ``submit`` itself: a broken concurrent.futures pool
    refuses new calls so (that refusal once escaped as mpq's internal _Lost, a traceback, not retried)."""

    def submit(self, fn, /, *args, **kwargs):
        future = super().submit(fn, *args, **kwargs)
        if future.exception() is not None:
            raise future.exception()
        return future


@pytest.mark.parametrize("executor_type", [Failing, Refusing], ids=["died-running", "refused-at-submit"])
def test_an_evaluation_whose_worker_died_runs_again_and_the_run_is_the_serial_one(serial, tmp_path, executor_type):
    db = tmp_path / "mpq.db"
    executor = executor_type(LOST, times=1)
    assert_same(stored(mpq.search(mpq.load_task(TINY), db=db, executor=executor, **SEARCH), db), serial)
    assert executor.failed == 1


def test_a_worker_that_dies_twice_fails_the_run_naming_the_point(tmp_path):
    executor = Failing(LOST)
    with pytest.raises(WorkerError, match=r"^point \d+: its worker died twice \(BrokenExecutor: .*; then .*\); check"):
        mpq.search(mpq.load_task(TINY), db=tmp_path / "mpq.db", executor=executor, max_points=4)
    assert executor.failed == 2  # tried, then retried once
    assert mpq.open_run(tmp_path / "mpq.db", 1).status == "failed"


@pytest.mark.slow  # workers spawn again and again; the fast twin: the test above
def test_a_process_pool_worker_that_always_dies_fails_naming_the_point(tmp_path, monkeypatch):
    monkeypatch.setenv("MPQ_TEST_KILL_WORKER", "always")
    with mpq.ProcessPool(2) as pool, pytest.raises(WorkerError, match=r"^point \d+: its worker died twice"):
        mpq.search(mpq.load_task(DYING), db=tmp_path / "mpq.db", executor=pool, max_points=4)


def test_an_interrupted_parallel_run_resumes_with_what_its_workers_stored(serial, tmp_path):
    db = tmp_path / "mpq.db"

    def stop(stage, done, total, message):
        if stage == "validate" and done >= 3:
            raise KeyboardInterrupt

    evaluations = []
    task = mpq.load_task(TINY)
    evaluate = task.evaluate
    task.evaluate = lambda model: evaluations.append(1) or evaluate(model)  # one metric for both runs
    with ThreadPoolExecutor(2) as pool, pytest.raises(SearchInterrupted):
        mpq.search(task, db=db, executor=pool, progress=stop, **SEARCH)
    assert mpq.open_run(db, 1).record["evaluations"] >= 1 + 3
    evaluations.clear()
    resumed = mpq.search(task, db=db, **SEARCH)  # the same search, without the executor: it resumes run 1
    assert resumed.id == 1 and resumed.record["settings"]["executor"] == "ThreadPoolExecutor"
    assert len(evaluations) < resumed.record["evaluations"] - 1  # what the workers finished is kept
    assert_same(stored(resumed, db), serial)


def test_a_task_a_worker_cannot_rebuild_is_refused_before_anything_is_stored(tmp_path):
    copy = tmp_path / "task.py"
    copy.write_text((TASKS / "tiny_task.py").read_text())
    task = mpq.load_task(f"{copy}:make_task")
    copy.unlink()  # a worker without the task's file
    db = tmp_path / "mpq.db"
    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(TaskSpecError, match=r"^worker .* cannot rebuild the task: --model .* does not exist"):
            mpq.search(task, db=db, executor=pool)
        other = mpq.load_task(TINY)
        with torch.no_grad():
            next(other.model.parameters()).add_(0.1)  # weights the worker's rebuild does not have
        with pytest.raises(TaskSpecError, match=r"rebuilt it with model [0-9a-f]{12}, but the searched task's hashes"):
            mpq.search(other, db=db, executor=pool)
        unspecified = mpq.Task("tiny", other.model, other.calibration, other.loss_fn, other.evaluate)
        with pytest.raises(InvalidParameterError, match="has no --model spec, so the executor's workers cannot"):
            mpq.search(unspecified, db=db, executor=pool)
    with pytest.raises(
        InvalidParameterError, match=r"^executor: a worker cannot import mpq .*pip install 'mpq\[scale\]'"
    ):
        mpq.search(
            mpq.load_task(TINY),
            db=db,
            executor=Failing(ModuleNotFoundError("No module named 'mpq'", name="mpq"), everything=True),
        )
    assert not db.exists()


def test_probe_refuses_a_task_its_workers_cannot_rebuild_before_the_trace_probes_run():
    task = mpq.load_task(TINY)
    unspecified = mpq.Task("tiny", task.model, task.calibration, task.loss_fn, task.evaluate)
    reports = []
    with ThreadPoolExecutor(1) as pool, pytest.raises(InvalidParameterError, match="has no --model spec"):
        mpq.probe(
            unspecified,
            settings=mpq.ProbeSettings(probes=("hessian_w", "measured"), candidates=("w8a8",)),
            executor=pool,
            progress=lambda *report: reports.append(report),
        )
    assert reports == []  # refused before the Hessian samples ran


def test_threads_of_one_worker_prepare_its_state_once():
    # Two threads preparing at once hooked the shared model together: a copy made by one of them
    # carried the other's range hooks, and the measured probe's values came out other than serial.
    made = []

    def make():
        made.append(threading.get_ident())
        time.sleep(0.05)  # long enough for every thread to arrive while the first prepares
        return len(made)

    memo = {}
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda _: _executors.prepared(memo, "state", make), range(4)))
    assert len(made) == 1 and found == [1, 1, 1, 1]


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    return info.value.code, capsys.readouterr().err


def test_cli_bad_executor_or_device_is_one_line_exit_2_nothing_stored(tmp_path, capsys, monkeypatch):
    db = tmp_path / "mpq.db"
    monkeypatch.setattr(_executors, "DASK_CONNECT_TIMEOUT_S", 0.5)
    try:
        import distributed  # noqa: F401
    except ImportError:
        unreachable = "--dask needs the distributed package, which is not installed; pip install 'mpq[scale]'."
    else:
        unreachable = "--dask 'tcp://127.0.0.1:9': no Dask scheduler answered within 0.5 s"
    cases = [
        (("--dask", "tcp://127.0.0.1:9"), unreachable),
        (("--workers", "0"), "The 'workers' parameter of search must be an int in the range [1, inf). Got 0"),
        (("--workers", "2", "--dask", "tcp://127.0.0.1:9"), "--workers and --dask: give one of the two"),
    ]
    if not torch.cuda.is_available():
        cases.append((("--device", "cuda"), "device 'cuda': torch"))
    for flags, message in cases:
        code, err = run_cli(capsys, "search", "--model", TINY, "--db", str(db), *flags)
        assert code == 2 and err.startswith(f"mpq: error: {message}") and err.count("\n") == 1, err
    assert not db.exists()


def test_probe_and_validate_run_on_a_device_and_refuse_a_missing_one_before_running(tmp_path, capsys):
    task = mpq.load_task(TINY)
    settings = mpq.ProbeSettings(tolerance=0.5, min_samples=2, max_samples=2)
    on_cpu = mpq.probe(task, settings=settings, device="cpu").drop(columns="seconds")
    pd.testing.assert_frame_equal(on_cpu, mpq.probe(task, settings=settings).drop(columns="seconds"))
    point = {"w8": dict.fromkeys(mpq.layers(task.model, task.calibration[0][0])["layer"], "w8a8")}
    assert mpq.validate(task, point, device=torch.device("cpu")).equals(mpq.validate(task, point))
    if torch.cuda.is_available():
        return
    for call in (
        lambda: mpq.probe(task, settings=settings, device="cuda"),
        lambda: mpq.validate(task, {}, device="cuda"),
    ):
        with pytest.raises(InvalidParameterError, match=r"^device 'cuda': torch .* sees no GPU on this machine; "):
            call()
    code, err = run_cli(capsys, "probe", "--model", TINY, "--db", str(tmp_path / "mpq.db"), "--device", "cuda")
    assert code == 2 and err.startswith("mpq: error: device 'cuda': torch") and err.count("\n") == 1, err
    assert not (tmp_path / "mpq.db").exists()


def test_cli_bad_workers_are_refused_before_the_task_is_built(tmp_path, capsys, monkeypatch):
    built = []
    monkeypatch.setattr(mpq, "load_task", built.append)  # the default task trains on its first run
    for flags in (("--workers", "0"), ("--workers", "2", "--dask", "tcp://127.0.0.1:9")):
        code, err = run_cli(capsys, "search", "--db", str(tmp_path / "mpq.db"), *flags)
        assert code == 2 and "workers" in err, err
    assert built == []


@pytest.mark.slow  # two worker processes start; the fast twins: the API tests above
def test_cli_workers(tmp_path, capsys):
    main(["search", "--model", TINY, "--db", str(tmp_path / "mpq.db"), "--max-points", "4", "--workers", "2"])
    out = capsys.readouterr().out
    assert "status done; ran on cpu with processes x2;" in out and "run id 1 in" in out
    assert mpq.open_run(tmp_path / "mpq.db", 1).record["settings"]["executor"] == "processes x2"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the CPU runs the same path: above)")
def test_a_search_on_the_gpu_measures_what_the_cpu_measures(tmp_path):
    task = mpq.load_task("example:digits-cnn")
    fast = mpq.ProbeSettings(tolerance=0.2, min_samples=4, max_samples=8)
    gpu = mpq.search(task, db=tmp_path / "mpq.db", settings=fast, max_points=4, device="cuda")
    assert gpu.record["settings"]["device"] == "cuda:0" and next(task.model.parameters()).device.type == "cpu"
    cpu = mpq.search(task, db=tmp_path / "mpq.db", settings=fast, max_points=4, device="cpu", fresh=True)
    assert gpu.record["float_metric"] == pytest.approx(cpu.record["float_metric"], abs=1e-6)
    assert len(gpu.frontier) == len(cpu.frontier)


class Counting(ThreadPoolExecutor):
    """Threads that count the evaluations submitted to them."""

    evaluations = 0

    def submit(self, fn, /, *args, **kwargs):
        self.evaluations += args[0] is evaluate_configuration
        return super().submit(fn, *args, **kwargs)


@pytest.mark.slow  # two digits searches with max_drop (40 s on 2 busy cores); the fast twin: the threads' test
def test_evaluations_started_ahead_leave_the_drop_search_as_the_serial_one(tmp_path):
    # Four threads: the bisection and the local repair start up to three evaluations ahead of the
    # one they wait for; what is stored, and counted, is what one evaluation at a time gives.
    drop = dict(settings=mpq.ProbeSettings(tolerance=0.2, min_samples=4, max_samples=8), max_drop="1%", max_evals=14)
    serial = mpq.search(mpq.load_task("example:digits-cnn"), db=tmp_path / "serial.db", **drop)
    with Counting(4) as pool:
        parallel = mpq.search(mpq.load_task("example:digits-cnn"), db=tmp_path / "parallel.db", executor=pool, **drop)
    assert pool.evaluations > parallel.record["evaluations"] - 1  # some were started ahead, and dropped
    assert_same(stored(parallel, tmp_path / "parallel.db"), stored(serial, tmp_path / "serial.db"))
    assert parallel.best(max_drop="1%").point == serial.best(max_drop="1%").point


@pytest.mark.skipif(torch.cuda.is_available(), reason="a worker without a GPU is the case")
def test_a_worker_without_the_searchs_gpu_says_so():
    ref = _executors.task_ref(mpq.load_task(TINY))
    with pytest.raises(
        InvalidParameterError, match=r"^worker .*: device 'cuda:0': torch .* sees no GPU on this machine"
    ):
        _executors.worker_task(_executors.TaskRef(ref.spec, ref.model_hash, ref.data_hash, "cuda:0"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="a worker without a GPU is the case")
def test_a_worker_without_the_searchs_gpu_refuses_before_building_the_task(monkeypatch):
    built = []
    monkeypatch.setattr("mpq._task_spec.load_task", built.append)  # building a real task can take minutes
    with pytest.raises(InvalidParameterError, match="sees no GPU on this machine"):
        _executors.worker_task(_executors.TaskRef(TINY, "model", "data", "cuda:0"))
    assert built == []
