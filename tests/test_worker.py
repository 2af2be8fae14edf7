"""The training worker: jobs in-process, then one real child process."""

import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest

from napari_sparseseg._worker import Worker, run_job
from napari_sparseseg.core.config import InferConfig
from napari_sparseseg.core.events import (
    DescribeRequest,
    Failed,
    Finished,
    ModelReady,
    PredictionReady,
    PredictRequest,
    Preview,
    Progress,
    TrainRequest,
)


@pytest.fixture
def request_(tiny_model, tiny_train, blob_pair):
    image, ann, _ = blob_pair
    return TrainRequest((image,), (ann,), (1.0, 1.0, 1.0), ("bg", "ball"), tiny_model, tiny_train,
                        InferConfig(window=(8, 16, 16)), view=(1, 9), preview_every=0.0,
                        uncertainty=True, infer_overrides={"device": "cpu"})


class NoCommands:
    def get_nowait(self):
        import queue

        raise queue.Empty


def test_train_job_sends_progress_preview_model_and_prediction(request_):
    events = []
    run_job(request_, NoCommands(), events.append, lambda: False)
    kinds = [type(e) for e in events]
    assert Progress in kinds and Preview in kinds
    preview = next(e for e in events if isinstance(e, Preview))
    assert (preview.axis, preview.index) == (1, 9) and preview.labels.shape == (11, 17)
    model = next(e for e in events if isinstance(e, ModelReady))
    assert model.class_names == ("bg", "ball") and model.reason == "iterations"
    result = events[-1]
    assert isinstance(result, PredictionReady) and result.labels.shape == (11, 19, 17)
    assert result.probabilities.shape == (2, 11, 19, 17) and result.uncertainty.dtype == np.uint8

    again = []  # the model's own inference settings (window 8x16x16), without being told
    run_job(PredictRequest(request_.images[0], model.model), NoCommands(), again.append, lambda: False)
    np.testing.assert_array_equal(again[-1].labels, result.labels)
    assert again[-1].uncertainty is None  # only computed when asked for

    described = []
    run_job(DescribeRequest(model.model, "m.pt"), NoCommands(), described.append, lambda: False)
    assert described == [ModelReady(model.model, ("bg", "ball"), 0, "loaded")]
    with pytest.raises(ValueError, match="not a napari-sparseseg model"):
        run_job(DescribeRequest(b"not a model", "m.pt"), NoCommands(), described.append, lambda: False)


def test_default_engine_sends_a_complete_prediction_before_training_ends(request_, tiny_model):
    model = replace(tiny_model, filters=(1.0,), pointwise=8, norm="none")
    train = replace(request_.train_config, pointwise_steps=30)
    job = replace(request_, model_config=model, train_config=train, early_answer=True)
    events = []
    run_job(job, NoCommands(), events.append, lambda: False)
    kinds = [type(e) for e in events]
    first, model_ready = kinds.index(PredictionReady), kinds.index(ModelReady)
    assert first < model_ready and kinds[-1] is PredictionReady  # an early answer, then the final one
    progress_before = [e for e in events[:first] if isinstance(e, Progress)]
    # right after the pointwise stage, before any U-Net step
    assert progress_before and all(e.iteration == 0 for e in progress_before)
    assert events[first].labels.shape == (11, 19, 17)
    assert events[first].early and events[first].uncertainty is None  # flatter probabilities: none
    assert not events[-1].early and events[-1].uncertainty is not None


def _wait(worker, until, timeout=180):
    seen, started = [], time.monotonic()
    while time.monotonic() - started < timeout:
        seen += worker.poll()
        if any(until(e) for e in seen):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"timed out; saw {[type(e).__name__ for e in seen]}")


def test_child_process_trains_stops_and_survives_a_crash(request_):
    worker = Worker()
    try:
        long = replace(request_, train_config=replace(request_.train_config, iterations=100_000),
                       predict_after=False)
        worker.submit(long)
        with pytest.raises(ValueError, match="busy"):
            worker.submit(long)
        _wait(worker, lambda e: isinstance(e, Progress))
        worker.set_view(0, 3)
        worker.stop()
        events = _wait(worker, lambda e: isinstance(e, Finished))
        ready = [e for e in events if isinstance(e, ModelReady)]
        assert ready and ready[0].reason == "stopped" and not worker.busy

        worker.submit(long)
        _wait(worker, lambda e: isinstance(e, Progress))
        os.kill(worker._process.pid, signal.SIGKILL)
        worker._process.join(10)
        worker.warm()  # the dock shown again before a poll: the crash must still be reported
        events = _wait(worker, lambda e: isinstance(e, Failed))
        assert "ended unexpectedly" in next(e for e in events if isinstance(e, Failed)).message
        assert not worker.busy

        worker.submit(PredictRequest(request_.images[0], ready[0].model))
        events = _wait(worker, lambda e: isinstance(e, Finished))
        assert any(isinstance(e, PredictionReady) for e in events)
    finally:
        worker.close()
    assert worker._process is None


def _mapped(pid: int, library: str) -> bool:
    with open(f"/proc/{pid}/maps") as maps:
        return library in maps.read()


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads /proc (Linux)")
def test_a_warmed_child_loads_the_engine_before_its_first_job_and_runs_it(request_):
    worker = Worker()
    try:
        worker.warm()
        pid = worker._process.pid
        deadline = time.monotonic() + 120
        while not (_mapped(pid, "libtorch_cpu") and _mapped(pid, "lib_lightgbm")):
            assert worker._process.is_alive() and time.monotonic() < deadline, "no torch and LightGBM"
            time.sleep(0.2)
        assert not worker.busy and worker.poll() == []
        worker.warm()  # a second call keeps the same child
        worker.submit(request_)
        events = _wait(worker, lambda e: isinstance(e, Finished))
        assert any(isinstance(e, PredictionReady) for e in events) and worker._process.pid == pid
    finally:
        worker.close()


def test_closing_an_idle_warmed_child_ends_it_at_once():
    worker = Worker()
    worker.warm()
    child = worker._process
    worker.close()  # the dock closed while the child still imports: no waiting for it
    assert worker._process is None and child.exitcode == -signal.SIGTERM


PARENT_SCRIPT = """
import sys, time
import numpy as np
from napari_sparseseg._worker import Worker
from napari_sparseseg.core.config import ModelConfig, TrainConfig
from napari_sparseseg.core.events import TrainRequest
ann = np.zeros((8, 16, 16), np.uint8); ann[4] = 1; ann[4, 4:8, 4:8] = 2
worker = Worker()
worker.submit(TrainRequest((np.random.rand(8, 16, 16).astype(np.float32),), (ann,), (1.0, 1.0, 1.0),
    ("bg", "fg"), ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16), iterations=10**6),
    predict_after=False))
while not worker.poll():
    time.sleep(0.1)
print(worker._process.pid, flush=True)
time.sleep(600)
"""


def test_child_ends_when_napari_is_killed():
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", PARENT_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        parent.kill()  # no clean-up code runs in the parent
        parent.wait()
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child)
    finally:
        parent.kill()


UNGUARDED_SCRIPT = """
import time
import numpy as np
from napari_sparseseg._worker import Worker
from napari_sparseseg.core.config import ModelConfig, TrainConfig
from napari_sparseseg.core.events import Finished, ModelReady, TrainRequest
print("the script runs", flush=True)
ann = np.zeros((8, 16, 16), np.uint8); ann[4] = 1; ann[4, 4:8, 4:8] = 2
worker = Worker()
worker.submit(TrainRequest((np.random.rand(8, 16, 16).astype(np.float32),), (ann,), (1.0, 1.0, 1.0),
    ("bg", "fg"), ModelConfig(features=(4, 8)), TrainConfig(patch_size=(8, 16, 16), iterations=2),
    predict_after=False))
events, deadline = [], time.monotonic() + 120
while not any(isinstance(e, Finished) for e in events) and time.monotonic() < deadline:
    events += worker.poll()
    time.sleep(0.1)
print("trained" if any(isinstance(e, ModelReady) for e in events) else events, flush=True)
worker.close()
"""


def test_a_script_without_a_main_guard_runs_once_and_its_child_trains(tmp_path):
    """napari scripts often open the viewer at top level; spawn must not run them again in the child."""
    import subprocess
    import sys

    script = tmp_path / "open_napari.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines() == ["the script runs", "trained"], done.stdout + done.stderr[-2000:]


KILLED_BEFORE_READING_SCRIPT = """
import os, signal, time
import numpy as np
from napari_sparseseg._worker import Worker
from napari_sparseseg.core.events import PredictRequest
worker = Worker()
worker._ensure_child()
os.kill(worker._process.pid, signal.SIGSTOP)  # the child cannot read the request ...
worker.submit(PredictRequest(np.zeros((64, 64, 64), np.float32), b"x"))  # ... bigger than a pipe holds
time.sleep(0.5)
os.kill(worker._process.pid, signal.SIGKILL)
while not worker.poll():
    time.sleep(0.1)
print("exiting", flush=True)
"""


def test_napari_can_exit_after_the_child_died_before_reading_its_request():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", KILLED_BEFORE_READING_SCRIPT], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exiting"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:  # a zombie has finished
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_stop_before_the_first_step_sends_no_model(request_):
    events = []
    run_job(request_, NoCommands(), events.append, lambda: True)
    assert not any(isinstance(e, (ModelReady, PredictionReady)) for e in events)  # the old model stays
    assert isinstance(events[-1], Failed) and "before the first training step" in events[-1].message


def test_too_little_free_memory_is_refused_before_training(request_, monkeypatch):
    import psutil

    memory = psutil.virtual_memory()._replace(available=1000)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory)
    events = []
    with pytest.raises(ValueError, match=r"Training on brain \(.* voxels\) needs about .* GB are free"):
        run_job(replace(request_, names=(("brain", "strokes"),)), NoCommands(), events.append, lambda: False)
    assert not any(isinstance(e, (Progress, ModelReady)) for e in events)
