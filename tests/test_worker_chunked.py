"""The worker's chunked prediction job (in-process): progress, an OME-Zarr mask, and stop."""

import dask.array as da
import numpy as np
import torch

from napari_sparseseg._worker import run_job
from napari_sparseseg.core import checkpoint, zarr_io
from napari_sparseseg.core.config import InferConfig, ModelConfig
from napari_sparseseg.core.events import ChunkedPredictionReady, ChunkedPredictRequest, ChunkProgress, Failed
from napari_sparseseg.core.inference import predict
from napari_sparseseg.core.normalize import Normalization


def _request(tmp_path):
    torch.manual_seed(2)
    config = InferConfig(window=(8, 16, 16))
    segmenter = checkpoint.Segmenter.create(ModelConfig(features=(4, 8)), 2, Normalization(0, 1, 0.5, 0.3),
                                            infer=config)
    image = np.random.default_rng(1).random((12, 40, 36)).astype(np.float32)
    request = ChunkedPredictRequest(da.from_array(image, chunks=(6, 20, 18)), checkpoint.to_bytes(segmenter),
                                    tmp_path / "mask.zarr", spacing=(3.0, 1.0, 1.0), chunks=(8, 16, 16),
                                    infer_overrides={"device": "cpu"})
    return request, predict(segmenter, image, config).labels


def test_chunked_job_writes_the_mask_and_reports_progress(tmp_path):
    request, reference = _request(tmp_path)
    events = []
    run_job(request, None, events.append, lambda: False)
    assert isinstance(events[-1], ChunkedPredictionReady) and events[-1].path == str(request.output)
    progress = [e for e in events if isinstance(e, ChunkProgress)]
    assert progress and progress[-1].done == progress[-1].total
    mask = zarr_io.open_lazy(request.output)
    assert mask.spacing == (3.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(mask.dask()), reference)


def test_stopping_a_chunked_job_writes_nothing(tmp_path):
    request, _ = _request(tmp_path)
    events = []
    run_job(request, None, events.append, lambda: True)
    assert isinstance(events[-1], Failed) and "stopped" in events[-1].message
    assert list(tmp_path.iterdir()) == []
