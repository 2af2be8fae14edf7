"""The ``sparseseg`` command: train, predict, segment, evaluate and demo over core.

Every user error ends with one sentence on stderr and exit status 2; nothing is
written until all inputs have been read and checked.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from ._terminal import Terminal
from .core import files, grid, io, zarr_io
from .core.config import DEFAULT_PRESET, PRESETS, resolve
from .core.events import (
    ChunkedPredictRequest,
    Outputs,
    PredictRequest,
    TrainRequest,
)
from .core.labels import as_labels
from .core.metrics import evaluate, format_table
from .core.validate import check_image

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
    p.add_argument("--max-passes", type=float, metavar="N",
                   help="stop once the patches covered each painted voxel N times on average (default 1000)")
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
    p.add_argument("--first-answer", type=Path, metavar="MASK",
                   help="also write the first stage's answer here within seconds, while the U-Net trains")
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
    _check_outputs(model=args.output, inputs=_inputs(args))
    request, _ = _train_request(args, predict_after=False)
    _run(replace(request, outputs=Outputs(model=args.output)))


def _run_predict(args) -> None:
    path, level = zarr_io.split_level(args.image)
    level = args.level if args.level is not None else level
    overrides = _infer_overrides(args)
    if _chunked(args, Path(path), level):
        volume = zarr_io.open_any(Path(path), level)
        if grid.is_oblique(path):
            _say(f"note: {args.output} keeps the voxel size of {path} but not the rotation in its affine "
                 "(OME-Zarr stores none); write a .nii.gz mask to keep it.")
        _distinct((args.output, args.probabilities), (path, args.model))
        _run(ChunkedPredictRequest(
            volume.array, _model_file(args.model), args.output, args.probabilities, spacing=volume.spacing,
            unit=volume.unit, chunks=_parse_chunks(args.chunks), infer_overrides=overrides,
            scheduler=args.scheduler, cluster=args.cluster, workers=args.workers, source=str(volume.path)))
        return
    _check_outputs(args.output, args.probabilities, inputs=(path, args.model))
    lazy = level is not None or zarr_io.is_zarr(path)
    image = _in_memory(zarr_io.open_lazy(path, level)) if lazy else io.read_volume(path)
    outputs = Outputs(args.output, args.probabilities, like=image)
    data = check_image(image.data, str(args.image))  # errors name the file
    _run(PredictRequest(data, _model_file(args.model), overrides, outputs=outputs))


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


def _model_file(path: Path) -> Path:
    return io.existing_file(path, "model file")


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
    _check_outputs(args.output, args.probabilities, args.first_answer, model=args.save_model,
                   inputs=_inputs(args))
    request, image = _train_request(args, predict_after=True)
    outputs = Outputs(args.output, args.probabilities, args.save_model, image, args.first_answer)
    terminal = _run(replace(request, outputs=outputs))
    if args.measure:
        from .core import measure

        result = terminal.prediction
        rows = measure.class_table(result.labels, image.spacing, result.class_names, result.probabilities,
                                   image.data)
        print(measure.format_classes(rows, image.unit))


def _run_evaluate(args) -> None:
    mask, truth = io.read_volume(args.mask), io.read_volume(args.truth)
    grid.check_same_grid(truth, mask)
    region = io.read_volume(args.unpainted).data == 0 if args.unpainted else None
    labels = as_labels(mask.data, str(args.mask)), as_labels(truth.data, str(args.truth))
    result = evaluate(*labels, mask=region)
    print(json.dumps(result, indent=2) if args.json else format_table(result))


def _run_measure(args) -> None:
    from .core import measure

    if args.csv:
        files.check_writable(args.csv)
    image = io.read_volume(args.image) if args.image else None
    mask = measure.read_mask(args.mask, image)
    names = ("background", *args.names) if args.names else None
    probs = io.read_probabilities(args.probabilities).data if args.probabilities else None
    rows = measure.class_table(mask.data, mask.spacing, names, probs, image.data if image else None)
    text = measure.format_classes(rows, mask.unit)
    if args.follow_up:
        second = measure.read_mask(args.follow_up)
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
        with files.atomic_write(args.csv) as tmp:
            tmp.write_text(measure.csv_text(rows))
        _say(f"table written to {args.csv}")


def _run_demo(args) -> None:
    from .core.synthetic import DEMO, demo_sample

    sample = demo_sample()
    chosen = resolve(DEFAULT_PRESET, max_time=args.max_time, iterations=args.iterations, device=args.device)
    _say(f"demo: synthetic tubules {sample.image.shape}, painted slices: {DEMO['slices_per_axis']} per axis")
    request = TrainRequest((sample.image,), (sample.annotation,), sample.spacing, sample.class_names,
                           chosen.model, chosen.train, chosen.infer, infer_overrides={"device": args.device})
    prediction = _run(request).prediction
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


def _check_outputs(*masks, model=None, inputs=()) -> None:
    """Fail before any work if an output cannot be written, or it names an input or another output."""
    _distinct((*masks, model), inputs)
    for path in masks:
        if path is not None:
            io.file_format(path)
            files.check_writable(path)
    if model is not None:
        files.check_writable(model)


def _distinct(outputs, inputs=()) -> None:
    """Refuse an output in the file of an input or of another output: one of them would be lost."""
    given = [Path(p) for p in inputs if p is not None and Path(p).exists()]
    named = set()
    for path in (Path(p) for p in outputs if p is not None):
        if path.exists() and any(path.samefile(p) for p in given):
            raise ValueError(f"{path} is one of the inputs; write the output to another file, or it would "
                             "replace that input.")
        if path.resolve() in named:
            raise ValueError(f"{path} is named for two outputs; give each output a file of its own.")
        named.add(path.resolve())


def _inputs(args) -> tuple:
    """The files a training command reads: images and annotations."""
    return args.image, args.annotations, *(p for pair in args.pair for p in pair)


def _train_request(args, predict_after: bool) -> tuple[TrainRequest, io.Volume]:
    """The training job the arguments ask for, with every input read and checked; and the image."""
    chosen = resolve(args.preset, max_time=args.max_time, iterations=args.iterations, device=args.device,
                     seed=args.seed, dice_weight=args.dice_weight, max_passes=args.max_passes)
    image = io.read_volume(args.image)
    pairs = [(image, io.read_volume(args.annotations)),
             *((io.read_volume(p), io.read_volume(a)) for p, a in args.pair)]
    for volume, painted in pairs:
        grid.check_same_grid(volume, painted)
    images, annotations = tuple(v.data for v, _ in pairs), tuple(a.data for _, a in pairs)
    names = ((str(args.image), str(args.annotations)), *((str(p), str(a)) for p, a in args.pair))
    init = _model_file(args.init) if args.init else None
    class_names = tuple(args.class_names.split(",")) if args.class_names else None
    request = TrainRequest(images, annotations, image.spacing, class_names, chosen.model, chosen.train,
                           chosen.infer, init, names, predict_after,
                           infer_overrides=_infer_overrides(args))
    return request, image


def _infer_overrides(args) -> dict:
    return {"device": args.device, "flip_tta": getattr(args, "tta", None) or None}


def _run(job) -> Terminal:
    """Run ``job`` here with a progress bar; Ctrl-C stops training (twice: aborts)."""
    from .core import jobs

    terminal = Terminal()
    with _stop_on_interrupt() as stop:
        jobs.run(job, terminal, stop)
        if terminal.failed:
            raise KeyboardInterrupt if stop() else ValueError(terminal.failed)
    return terminal


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
        _say("\nstopping after this step (Ctrl-C again to abort)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
