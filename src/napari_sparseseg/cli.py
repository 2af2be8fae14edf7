"""The ``sparseseg`` command: train, predict, segment, evaluate and demo over core.

Every user error ends with one sentence on stderr and exit status 2; nothing is
written until all inputs have been read and checked.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from .core import checkpoint, io, zarr_io
from .core.config import DEFAULT_PRESET, PRESETS, preset
from .core.metrics import evaluate, format_table

EXIT_USER_ERROR = 2
LAZY_BYTES = 1 << 30  # inputs larger than this are predicted chunk by chunk


def main(argv=None) -> int:
    """Entry point of the ``sparseseg`` console script."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except ValueError as err:
        print(f"sparseseg: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("sparseseg: interrupted; nothing more was written.", file=sys.stderr)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparseseg",
        description="Dense 3D segmentation from a few painted slices (3D U-Net, Çiçek et al. 2016).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_predict(sub)
    _add_segment(sub)
    _add_evaluate(sub)
    _add_measure(sub)
    _add_demo(sub)
    return parser


def _training_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS), help="model size")
    p.add_argument("--max-time", type=float, metavar="SECONDS", help="training time budget")
    p.add_argument("--iterations", type=int, metavar="N", help="training iteration budget")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    p.add_argument("--init", type=Path, metavar="MODEL", help="continue training this model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dice-weight", type=float, metavar="ALPHA", help="loss = α·Dice + (1−α)·CE")
    p.add_argument("--class-names", metavar="A,B,..", help="names of mask values 0, 1, ...")
    p.add_argument(
        "--pair", nargs=2, action="append", default=[], metavar=("IMAGE", "ANNOTATIONS"),
        help="one more (image, annotations) pair to learn from; repeatable",
    )


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="learn a model from painted annotations")
    p.add_argument("image", type=Path)
    p.add_argument("annotations", type=Path, help="0 unlabeled, 1 background, k+1 class k")
    p.add_argument("--output", "-o", type=Path, required=True, metavar="MODEL")
    _training_options(p)
    p.set_defaults(run=_run_train)


def _add_predict(sub) -> None:
    p = sub.add_parser("predict", help="apply a saved model to an image (any size: zarr in, zarr out)")
    p.add_argument("image", help="TIFF, NIfTI, npy, zarr array or OME-Zarr image (PATH[:LEVEL])")
    p.add_argument("--model", "-m", type=Path, required=True)
    p.add_argument("--output", "-o", type=Path, required=True, metavar="MASK",
                   help="mask file; *.zarr writes an OME-Zarr chunk by chunk")
    _predict_options(p)
    big = p.add_argument_group("large volumes (dask; output and probabilities must be *.zarr)")
    big.add_argument("--level", type=int, help="resolution level of an OME-Zarr or pyramidal TIFF input")
    big.add_argument("--chunks", metavar="Z,Y,X", help="chunk size (default 4 windows per axis)")
    big.add_argument("--scheduler", metavar="ADDRESS",
                     help="'threads' (default) or a dask.distributed scheduler, e.g. tcp://host:8786")
    big.add_argument("--cluster", metavar="local:N", help="start a LocalCluster of N worker processes")
    big.add_argument("--workers", type=int, metavar="N", help="threads of the local scheduler")
    p.set_defaults(run=_run_predict)


def _predict_options(p: argparse.ArgumentParser, device: bool = True) -> None:
    p.add_argument("--probabilities", type=Path, metavar="PATH", help="also write class probabilities")
    p.add_argument("--tta", action="store_true", help="average over mirrored copies (slower)")
    if device:
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")


def _add_segment(sub) -> None:
    p = sub.add_parser("segment", help="train on the annotations, then predict the image")
    p.add_argument("image", type=Path)
    p.add_argument("annotations", type=Path, help="0 unlabeled, 1 background, k+1 class k")
    p.add_argument("--output", "-o", type=Path, required=True, metavar="MASK")
    p.add_argument("--save-model", type=Path, metavar="PATH")
    p.add_argument("--measure", action="store_true", help="print the volume of every class afterwards")
    _training_options(p)
    _predict_options(p, device=False)
    p.set_defaults(run=_run_segment)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="compare a mask with the truth")
    p.add_argument("mask", type=Path)
    p.add_argument("truth", type=Path)
    p.add_argument("--unpainted", type=Path, metavar="ANNOTATIONS", help="score only voxels unpainted here")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_run_evaluate)


def _add_measure(sub) -> None:
    p = sub.add_parser("measure", help="volumes per class and sizes per object of a mask, in physical units")
    p.add_argument("mask", type=Path)
    p.add_argument("follow_up", type=Path, nargs="?", metavar="MASK2",
                   help="a second mask of the same subject: print the change per class")
    p.add_argument("--image", type=Path,
                   help="add the image's mean per class (and its spacing for a .npy mask)")
    p.add_argument("--probabilities", type=Path, metavar="PATH",
                   help="written by --probabilities: add the soft volume and its range")
    p.add_argument("--objects", action="store_true", help="one row per connected object")
    p.add_argument("--connectivity", type=int, choices=(6, 26), default=6,
                   help="6: objects touching at a face are one; 26: at an edge or corner too (default 6)")
    p.add_argument("--names", nargs="+", metavar="NAME", help="names of classes 1, 2, …")
    p.add_argument("--csv", type=Path, metavar="PATH", help="also write the table as CSV")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_run_measure)


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="train and predict on the built-in synthetic tubule sample")
    p.add_argument("--max-time", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--iterations", type=int, metavar="N")
    p.add_argument("--device", default="auto")
    p.add_argument("--output-dir", type=Path, help="also write image, annotations and mask here")
    p.add_argument("--gui", action="store_true", help="open the result in napari")
    p.set_defaults(run=_run_demo)


# ---------------------------------------------------------------- commands


def _run_train(args) -> None:
    _check_outputs(model=args.output)
    segmenter, _ = _train_from_args(args)
    checkpoint.save(segmenter, args.output)
    _say(f"model written to {args.output}")


def _run_predict(args) -> None:
    path, level = zarr_io.split_level(args.image)
    level = args.level if args.level is not None else level
    if _chunked(args, Path(path), level):
        _predict_chunked(args, Path(path), level)
        return
    _check_outputs(args.output, args.probabilities)
    lazy = level is not None or zarr_io.is_zarr(path)
    image = _in_memory(zarr_io.open_lazy(path, level)) if lazy else io.read_volume(path)
    segmenter = checkpoint.load(args.model)
    _write_prediction(args, segmenter, image)


def _chunked(args, path: Path, level) -> bool:
    """The dask path: zarr output, dask options, or an input too big to read whole."""
    asked = [o for o in ("chunks", "scheduler", "cluster", "workers") if getattr(args, o) is not None]
    big = zarr_io.array_nbytes(path) > LAZY_BYTES
    if not (asked or big or zarr_io.is_zarr(args.output)):
        return False
    for out in (args.output, args.probabilities):
        if out is not None and not zarr_io.is_zarr(out):
            why = f"{path} is larger than {LAZY_BYTES >> 30} GiB" if big else f"--{asked[0]} was given"
            raise ValueError(f"{why}, so the prediction is written chunk by chunk; name {out} *.zarr.")
    return True


def _in_memory(volume) -> io.Volume:
    return io.Volume(np.asarray(volume.dask()), volume.spacing, path=volume.path)


def _predict_chunked(args, path: Path, level) -> None:
    from .core.chunked import overhead, plan_chunks, predict_dask
    from .core.cluster import runner
    from .core.inference import prediction_window

    for out in (args.output, args.probabilities):
        if out is not None:
            zarr_io.check_zarr_output(out)
    volume = zarr_io.open_any(path, level)
    segmenter = checkpoint.load(args.model)
    infer = _infer_config(args)
    chunks = _parse_chunks(args.chunks)
    grid = plan_chunks(volume.shape, segmenter, infer, chunks)
    extra = overhead(grid, prediction_window(segmenter, infer, volume.shape))
    with runner(args.scheduler, args.cluster, args.workers) as run:
        _say(f"predicting {volume.path} {volume.shape} in {np.prod([len(c) for c in grid])} chunks of "
             f"{tuple(c[0] for c in grid)} on {run.description} (window work x{extra:.2f} at borders)")
        prediction = predict_dask(volume.array, segmenter, infer, chunks)
        started = time.perf_counter()
        zarr_io.store_prediction(prediction, args.output, args.probabilities, spacing=volume.spacing,
                                 unit=volume.unit, class_names=segmenter.class_names, compute=run.compute)
    seconds = time.perf_counter() - started
    _say(f"predicted {np.prod(volume.shape):,} voxels in {seconds:.1f} s "
         f"({np.prod(volume.shape) / seconds / 1e6:.2f} Mvox/s)")
    legend = ", ".join(f"{k} {name}" for k, name in enumerate(segmenter.class_names))
    _say(f"mask written to {args.output} (OME-Zarr, values: {legend})")
    if args.probabilities:
        _say(f"probabilities (0..255) written to {args.probabilities}")


def _parse_chunks(text):
    if text is None:
        return None
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) == 1:
        values *= 3
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"--chunks {text!r} is not understood; give Z,Y,X sizes such as 64,256,256.")
    return tuple(values)


def _run_segment(args) -> None:
    _check_outputs(args.output, args.probabilities, model=args.save_model)
    segmenter, image = _train_from_args(args)
    if args.save_model:
        checkpoint.save(segmenter, args.save_model)
        _say(f"model written to {args.save_model}")
    _write_prediction(args, segmenter, image)


def _run_evaluate(args) -> None:
    mask, truth = io.read_volume(args.mask).data, io.read_volume(args.truth).data
    region = None
    if args.unpainted:
        region = io.read_volume(args.unpainted).data == 0
    result = evaluate(_labels(mask, args.mask), _labels(truth, args.truth), mask=region)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


def _run_measure(args) -> None:
    from .core import measure

    if args.csv:
        io.check_writable(args.csv)
    mask = _measured(args.mask, args.image)
    names = ("background", *args.names) if args.names else None
    image = io.read_volume(args.image).data if args.image else None
    probs = io.read_probabilities(args.probabilities).data if args.probabilities else None
    rows = measure.class_table(mask.data, mask.spacing, names, probs, image)
    text = measure.format_classes(rows, mask.unit)
    if args.follow_up:
        second = _measured(args.follow_up, None)
        if second.unit != mask.unit:
            raise ValueError(f"{args.mask} is in {mask.unit or 'an unknown unit'} but {args.follow_up} in "
                             f"{second.unit or 'an unknown unit'}; give two masks in the same unit.")
        rows = measure.change_table(rows, measure.class_table(second.data, second.spacing, names))
        text = measure.format_change(rows, mask.unit)
    elif args.objects:
        rows = measure.object_table(mask.data, mask.spacing, names, args.connectivity)
        text = measure.format_objects(rows, mask.unit)
    result = {"unit": mask.unit, "spacing": mask.spacing, "rows": rows}
    print(json.dumps(result, indent=2) if args.json else text)
    if args.csv:
        with io.atomic_write(args.csv) as tmp:
            tmp.write_text(measure.csv_text(rows))
        _say(f"table written to {args.csv}")


def _measured(path: Path, image_path: Path | None) -> io.Volume:
    """The mask as a label volume; a .npy mask takes the spacing and unit of ``--image``."""
    from .core.measure import check_mask

    mask = io.read_volume(path)
    data = check_mask(_labels(mask.data, path) if mask.data.dtype.kind == "f" else mask.data, str(path))
    if image_path and io.file_format(path) == "npy":
        image = io.read_volume(image_path)
        return io.Volume(data, image.spacing, path=path, unit=image.unit)
    return io.Volume(data, mask.spacing, mask.affine, mask.header, path, mask.unit)


def _run_demo(args) -> None:
    from .core.synthetic import make_sample

    sample = make_sample(shape=(32, 96, 96), slices_per_axis=2, seed=0)
    chosen = preset(DEFAULT_PRESET)
    budget = replace(chosen.train, max_time=args.max_time, iterations=args.iterations, device=args.device)
    _say(f"demo: synthetic tubules {sample.image.shape}, painted slices: 2 per axis")
    segmenter = _fit([sample.image], [sample.annotation], chosen.model, budget, sample.spacing,
                     sample.class_names, None, [("sample", "sample annotations")])
    prediction = _predict(segmenter, sample.image, replace(chosen.infer, device=args.device))
    result = evaluate(prediction.labels, sample.truth, n_classes=3, mask=sample.annotation == 0,
                      class_names=sample.class_names)
    print("Dice etc. on the voxels that were not painted:")
    print(format_table(result))
    if args.output_dir:
        _write_demo(args.output_dir, sample, prediction.labels)
    if args.gui:
        from ._demo import show

        show(sample, prediction)


# ---------------------------------------------------------------- helpers


def _check_outputs(*masks, model=None) -> None:
    """Fail before any work if an output cannot be written."""
    for path in masks:
        if path is not None:
            io.file_format(path)
            io.check_writable(path)
    if model is not None:
        io.check_writable(model)


def _labels(data: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(data.dtype, np.floating) and not np.array_equal(data, np.round(data)):
        raise ValueError(f"{path} holds non-integer values; give a label mask.")
    return data.astype(np.int64)


def _train_from_args(args):
    chosen = preset(args.preset)
    image = io.read_volume(args.image)
    images = [image.data, *(io.read_volume(p).data for p, _ in args.pair)]
    annotations = [io.read_volume(args.annotations).data, *(io.read_volume(a).data for _, a in args.pair)]
    names = [(str(args.image), str(args.annotations)), *args.pair]
    init = checkpoint.load(args.init) if args.init else None
    config = _train_config(chosen.train, args)
    class_names = args.class_names.split(",") if args.class_names else None
    segmenter = _fit(images, annotations, chosen.model, config, image.spacing, class_names, init, names)
    return segmenter, image


def _train_config(base, args):
    budget = {"device": args.device, "seed": args.seed}
    if args.max_time is not None or args.iterations is not None:
        budget.update(max_time=args.max_time, iterations=args.iterations)
    if args.dice_weight is not None:
        budget["dice_weight"] = args.dice_weight
    return replace(base, **budget)


def _fit(images, annotations, model_config, train_config, spacing, class_names, init, names):
    from .core.trainer import fit

    bar = ProgressBar("training")
    with _stop_on_interrupt() as stop:
        return fit(images, annotations, model_config, train_config, spacing, init,
                   class_names, stop=stop, on_progress=bar.update, names=names)


def _predict(segmenter, image, infer_config):
    from .core.inference import predict

    started = time.perf_counter()
    prediction = predict(segmenter, image, infer_config)
    _say(f"predicted {image.size:,} voxels in {time.perf_counter() - started:.1f} s")
    return prediction


def _infer_config(args):
    return replace(preset(getattr(args, "preset", DEFAULT_PRESET)).infer, device=args.device,
                   flip_tta=args.tta)


def _write_prediction(args, segmenter, image: io.Volume) -> None:
    infer = _infer_config(args)
    prediction = _predict(segmenter, image.data, infer)
    io.write_volume(args.output, prediction.labels, like=image)
    legend = ", ".join(f"{k} {name}" for k, name in enumerate(segmenter.class_names))
    _say(f"mask written to {args.output} (values: {legend})")
    if args.probabilities:
        io.write_probabilities(args.probabilities, prediction.probabilities, like=image)
        _say(f"probabilities (0..255) written to {args.probabilities}")
    if getattr(args, "measure", False):
        from .core import measure

        rows = measure.class_table(prediction.labels, image.spacing, segmenter.class_names,
                                   prediction.probabilities, image.data)
        print(measure.format_classes(rows, image.unit))


def _write_demo(folder: Path, sample, labels) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in (("image", sample.image), ("annotations", sample.annotation),
                       ("truth", sample.truth), ("mask", labels)):
        io.write_volume(folder / f"{name}.tif", data, spacing=sample.spacing)
    _say(f"sample and result written to {folder}")


@contextmanager
def _stop_on_interrupt():
    """First Ctrl-C ends training after the current step; the second one aborts."""
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(True)
        _say("\nstopping after this iteration (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most five times a second."""

    def __init__(self, label: str, width: int = 24):
        self.label, self.width, self.last = label, width, 0.0

    def update(self, event) -> None:
        now = time.perf_counter()
        if not event.done and now - self.last < 0.2:
            return
        self.last = now
        filled = int(event.fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"\r{self.label} [{bar}] {100 * event.fraction:3.0f}%  it {event.iteration}  "
                f"loss {event.loss:.4f}  {event.elapsed:.0f} s  {event.voxels_per_s / 1e6:.2f} Mvox/s")
        sys.stderr.write(line + (f"  ({event.reason})\n" if event.done else ""))
        sys.stderr.flush()


def _say(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
