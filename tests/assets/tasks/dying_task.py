"""The tiny task (tiny_task.py), whose evaluations can kill the worker process running them.

``MPQ_TEST_KILL_WORKER=DIR``: the first evaluation that any worker process (a process with a
parent: a pool's or a Dask nanny's, never the test's own) runs exits that process abruptly,
once (it claims ``DIR/killed``); ``MPQ_TEST_KILL_WORKER=always``: every one does. The model and
data are tiny_task's, so the hashes, and what is searched, are the same.
"""

import importlib.util
import multiprocessing
import os
from pathlib import Path

spec = importlib.util.spec_from_file_location("_mpq_test_tiny_task", Path(__file__).with_name("tiny_task.py"))
tiny = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny)


def _dies_here() -> bool:
    where = os.environ.get("MPQ_TEST_KILL_WORKER")
    if not where or multiprocessing.parent_process() is None:
        return False
    if where == "always":
        return True
    try:
        os.close(os.open(Path(where) / "killed", os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def make_task():
    task = tiny.make_task()
    evaluate = task.evaluate

    def dying(model):
        if _dies_here():
            os._exit(1)
        return evaluate(model)

    task.evaluate = dying
    return task
