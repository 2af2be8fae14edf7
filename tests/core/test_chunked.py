"""Chunked (dask) prediction: equal to the single-volume result at chunk borders; model loaded once."""

import logging
import sys

import dask
import dask.array as da
import numpy as np
import pytest
import torch

from napari_sparseseg.core import chunked, cluster, inference
from napari_sparseseg.core.checkpoint import Segmenter, to_bytes
from napari_sparseseg.core.config import InferConfig, ModelConfig
from napari_sparseseg.core.inference import (
    model_inputs,
    predict,
    prediction_window,
    segmenter_predictor,
    sliding_window,
)
from napari_sparseseg.core.normalize import Normalization


@pytest.fixture
def segmenter():
    torch.manual_seed(0)
    config = ModelConfig(features=(4, 8), norm="instance")
    return Segmenter.create(config, 3, Normalization(0.1, 0.9, 0.5, 0.2))


@pytest.fixture
def filter_segmenter():
    """A model on filter-bank features: chunks must also read the filters' halo."""
    torch.manual_seed(0)
    config = ModelConfig(features=(4, 8), filters=(1.0, 2.0), pointwise=4, spacing=(2.0, 1.0, 1.0))
    segmenter = Segmenter.create(config, 3, Normalization(0.1, 0.9, 0.5, 0.2))
    segmenter.net.stem.fit_scale(torch.randn(100, segmenter.net.stem.out_channels) * 0.1 + 0.5)
    torch.nn.init.normal_(segmenter.net.head.weight, std=0.3)  # a non-zero U-Net correction
    return segmenter


def _volume(shape, seed=0):
    z, y, x = np.indices(shape)
    rng = np.random.default_rng(seed)
    return (np.sin(z / 3) * np.cos(y / 5) + 0.3 * rng.random(shape) + x / shape[2]).astype(np.float32)


def _assert_labels_equal_except_ties(labels, reference, probs, tol=1e-5):
    top2 = np.sort(probs, axis=0)[-2:]
    tie = (top2[1] - top2[0]) < tol
    assert np.array_equal(labels[~tie], reference[~tie])


@pytest.mark.parametrize(
    "shape, chunks, overlap",
    [((21, 45, 38), (9, 17, 16), 0.25),  # 2 x 2 x 2 chunks, short last chunks merged
     ((30, 52, 50), (10, 16, 16), 0.5),  # 3 x 3 x 3 chunks, dense window grid
     ((6, 40, 37), (8, 16, 16), 0.25)],  # z shorter than the window: padded, one chunk along z
)
def test_chunk_borders_equal_the_single_volume_result(segmenter, shape, chunks, overlap):
    _check_chunked_equals_whole(segmenter, shape, chunks, overlap)


def test_filter_features_at_chunk_borders_equal_the_single_volume_result(filter_segmenter):
    assert filter_segmenter.net.stem.halo() == (5, 8, 8)
    _check_chunked_equals_whole(filter_segmenter, (36, 70, 66), (12, 24, 24), 0.25)


def test_structure_tensors_at_chunk_borders_equal_the_single_volume_result():
    """A structure tensor reaches further than the smoothing it starts from: its gradients are
    smoothed again (inner σ 2, outer σ 4: 6 + 1 + 12 voxels in y and x, 3 + 1 + 6 in z at spacing 2)."""
    torch.manual_seed(0)
    config = ModelConfig(features=(4, 8), filters=(1.0,), tensors=(2.0,), pointwise=4,
                         spacing=(2.0, 1.0, 1.0))
    segmenter = Segmenter.create(config, 3, Normalization(0.1, 0.9, 0.5, 0.2))
    segmenter.net.stem.fit_scale(torch.randn(100, segmenter.net.stem.out_channels) * 0.1 + 0.5)
    torch.nn.init.normal_(segmenter.net.head.weight, std=0.3)
    assert segmenter.net.stem.halo() == (10, 19, 19)
    _check_chunked_equals_whole(segmenter, (36, 76, 72), (18, 36, 36), 0.25)  # chunks: window + halo


def test_a_first_stage_alone_is_predicted_without_windows_and_equals_the_windows_blend(filter_segmenter):
    """Without the U-Net's correction the model answers voxel by voxel: in memory and chunk by chunk
    it runs on slabs, and gives what blending its windows gives."""
    assert not inference.answers_per_voxel(filter_segmenter)
    filter_segmenter.net.drop_correction()
    assert inference.answers_per_voxel(filter_segmenter)
    calls, crops = [], []
    original, inputs = inference._slab_by_slab, chunked.model_inputs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inference, "_slab_by_slab", lambda *a, **k: calls.append(1) or original(*a, **k))
        patch.setattr(chunked, "model_inputs",
                      lambda s, v, crop, **k: crops.append(crop) or inputs(s, v, crop, **k))
        _check_chunked_equals_whole(filter_segmenter, (36, 70, 66), (12, 24, 24), 0.25)
    assert len(calls) > 8  # predict() once, and every chunk of the dask runs
    # features and first stage only where a chunk answers: no windows' halo (two dask runs)
    assert sum(np.prod([c.stop - c.start for c in crop]) for crop in crops) == 2 * 36 * 70 * 66


def _check_chunked_equals_whole(segmenter, shape, chunks, overlap):
    image = _volume(shape)
    config = InferConfig(window=(8, 16, 16), overlap=overlap, batch_size=2, device="cpu")
    lazy = chunked.probabilities_dask(da.from_array(image, chunks=(7, 11, 13)), segmenter, config, chunks)
    assert all(len(c) >= 2 for c in lazy.chunks[2:])  # the volume really spans several chunks
    window = prediction_window(segmenter, config, shape)
    whole = sliding_window(model_inputs(segmenter, segmenter.normalization.apply(image)),
                           segmenter_predictor(segmenter, config),
                           window, overlap, config.batch_size)
    probs = lazy.compute(scheduler="threads")
    np.testing.assert_allclose(probs, whole, rtol=0, atol=1e-6)
    reference = predict(segmenter, image, config)
    result = chunked.predict_dask(image, segmenter, config, chunks)
    labels, uint8 = dask.compute(result.labels, result.probabilities, scheduler="threads")
    _assert_labels_equal_except_ties(labels, reference.labels, whole)
    assert np.abs(uint8.astype(int) - reference.probabilities).max() <= 1


def test_chunk_grid_keeps_chunks_at_least_one_window():
    assert chunked.chunk_grid((21, 100, 7), (9, 32, 4), (8, 16, 8)) == ((9, 12), (32, 32, 36), (7,))
    assert chunked.default_chunks((300, 40, 1000), (32, 64, 64)) == (128, 40, 256)
    assert chunked.overhead(((64,), (64,), (64,)), (32, 32, 32)) == 1.0


def test_model_is_loaded_once_per_process_not_per_chunk(segmenter):
    config = InferConfig(window=(8, 16, 16), device="cpu")
    chunked._CACHE.clear()
    digest = chunked.ModelPayload(to_bytes(segmenter), config).digest
    before = chunked.LOADS[digest]
    result = chunked.predict_dask(_volume((16, 48, 48)), segmenter, config, (8, 16, 16))
    assert result.labels.npartitions == 18
    result.labels.compute(scheduler="threads", num_workers=2)
    assert chunked.LOADS[digest] - before == 1
    chunked.predict_dask(_volume((16, 48, 48)), segmenter, config, (8, 16, 16)).labels.compute()
    assert chunked.LOADS[digest] - before == 1  # same model: cached


def test_bad_inputs_are_one_sentence_errors(segmenter):
    config = InferConfig(window=(8, 16, 16), device="cpu")
    with pytest.raises(ValueError, match="3D"):
        chunked.predict_dask(np.zeros((2, 8, 16, 16)), segmenter, config)
    image = _volume((16, 32, 32))
    image[12, 30, 30] = np.nan
    lazy = chunked.predict_dask(image, segmenter, config, (8, 16, 16))
    with pytest.raises(ValueError, match=r"NaN or infinite voxels near \[8:16, 16:32, 16:32\]"):
        lazy.labels.compute(scheduler="sync")


def test_progress_and_stop_on_local_threads(segmenter):
    config = InferConfig(window=(8, 16, 16), device="cpu")
    lazy = chunked.predict_dask(_volume((16, 32, 32)), segmenter, config, (8, 16, 16)).labels
    seen = []
    run = cluster.Runner(None, 2, progress=False)
    run.compute(lazy, on_progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] >= 4
    with pytest.raises(cluster.Stopped):
        run.compute(lazy, should_stop=lambda: True)


def test_torch_threads_fill_but_do_not_oversubscribe_cores():
    assert cluster.torch_threads(2, cpus=2) == 1
    assert cluster.torch_threads(1, cpus=8) == 8
    assert cluster.torch_threads(16, cpus=8) == 1
    with pytest.raises(ValueError, match="local:N"):
        cluster.parse_cluster("remote:2")
    if sys.platform.startswith("linux"):
        assert cluster.limit_heap_growth()  # glibc: fixed mmap threshold, RSS stays flat over chunks


def test_two_worker_local_cluster_ships_the_model_once_per_worker(segmenter, tmp_path):
    from napari_sparseseg.core import zarr_io

    config = InferConfig(window=(8, 16, 16), device="cpu")
    image = _volume((16, 48, 40))
    reference = predict(segmenter, image, config)
    with cluster.runner(cluster="local:2", progress=False) as run:
        assert len(run.client.scheduler_info()["workers"]) == 2
        assert all(addr.startswith("tcp://127.0.0.1") for addr in run.client.scheduler_info()["workers"])
        result = chunked.predict_dask(image, segmenter, config, (8, 16, 16))
        assert result.labels.npartitions >= 8
        zarr_io.store_prediction(result, tmp_path / "mask.zarr", spacing=(2.0, 1.0, 1.0), compute=run.compute)
        counts = run.client.run(lambda: (sum(chunked.RECEIVED.values()), sum(chunked.LOADS.values())))
        threads = run.client.run(lambda: torch.get_num_threads())
    logging.getLogger("distributed").setLevel(logging.ERROR)
    assert sum(loads for _, loads in counts.values()) >= 1
    assert all(received <= 1 and loads <= 1 for received, loads in counts.values()), counts
    assert set(threads.values()) == {cluster.torch_threads(2)}
    mask = zarr_io.open_lazy(tmp_path / "mask.zarr")
    assert mask.spacing == (2.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(mask.dask()), reference.labels)


def test_the_callers_array_is_never_normalised_in_place(segmenter):
    image = _volume((16, 32, 32))
    before = image.copy()
    config = InferConfig(window=(8, 16, 16), device="cpu")
    for source in (image, da.from_array(image, chunks=(8, 16, 16)), da.from_array(image, chunks=-1)):
        chunked.predict_dask(source, segmenter, config, (8, 16, 16)).labels.compute(scheduler="threads")
        np.testing.assert_array_equal(image, before)
