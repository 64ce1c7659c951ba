"""The `cxrdrift` command line: dataset tools, the pipeline, and the book."""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from . import config as cfg

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _add_class_map(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--class-map", metavar="MAP", default=None,
                        help="map folder or label names onto the five classes, e.g. "
                             "'Viral Pneumonia=Pneumonia,Bacterial Pneumonia=Pneumonia'")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=cfg.PROFILES, default="demo",
                        help="paper (real data, ImageNet, GPU), demo (synthetic, CPU) or smoke (CI)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="dataset root (train/val/test folders or manifest.csv); "
                             "omit to use the built-in synthetic radiographs")
    _add_class_map(parser)
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="override any RunConfig field, e.g. -p threshold 0.4 "
                             "(see `cxrdrift config --fields`)")
    parser.add_argument("--force", action="store_true", help="redo finished stages")


def _config_from(args: argparse.Namespace) -> cfg.RunConfig:
    overrides = dict(args.param)
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.class_map is not None:
        overrides["class_map"] = args.class_map
    return cfg.profile(args.profile, **overrides)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxrdrift",
        description="Semantic drift of CAM explanations between transfer learning and fine-tuning "
                    "(five-class chest X-ray).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="generate or check a dataset",
                               description="Generate the synthetic dataset or check a dataset folder.")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_commands.add_parser("synth", help="write the built-in synthetic radiographs",
                                     description="Write synthetic chest radiographs and lesion masks in "
                                                 "the real dataset's folder layout.")
    synth.add_argument("out", metavar="OUT", help="output folder")
    synth.add_argument("--train", type=int, default=1200, help="training images (default 1200)")
    synth.add_argument("--val", type=int, default=200, help="validation images (default 200)")
    synth.add_argument("--test", type=int, default=400, help="test images (default 400)")
    synth.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    synth.add_argument("--lung-masks", action="store_true",
                       help="also write the lung fields as masks (lung_masks/<split>/<class>/<id>.png)")
    check = data_commands.add_parser("check", help="validate a dataset folder or manifest",
                                     description="Print split x class counts and every problem found; "
                                                 "exit status 1 when the dataset cannot be used.")
    check.add_argument("root", metavar="ROOT", help="dataset root or manifest.csv")
    _add_class_map(check)
    check.add_argument("--min-size", type=int, default=None, metavar="PX",
                       help="warn about images smaller than PX on the short side (default 64)")
    split = data_commands.add_parser("split", help="split an unsplit dataset into a manifest",
                                     description="Write a stratified train/val/test manifest of a "
                                                 "<root>/<class>/ dataset; images of one group (--group-by) "
                                                 "and identical images always share a split.")
    split.add_argument("root", metavar="ROOT", help="dataset root with one folder per class")
    split.add_argument("--out", required=True, metavar="CSV", help="manifest to write, e.g. ROOT/manifest.csv")
    split.add_argument("--val", type=float, default=0.1, help="validation share (default 0.1)")
    split.add_argument("--test", type=float, default=0.2, help="test share (default 0.2)")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    split.add_argument("--group-by", metavar="REGEX", default=None,
                       help="regular expression on file names whose first group (or whole match) is the "
                            "patient; e.g. '^(\\w+?)_' for 'P0012_1.png'")
    _add_class_map(split)

    run = commands.add_parser("run", help="run every stage (no book)",
                              description="Data, training, true-positive filter, CAMs and drift "
                                          "into the run directory; finished stages are skipped.")
    _add_run_options(run)

    book = commands.add_parser("book", help="execute the notebooks and build the book",
                               description="Execute notebooks/NN_*.md with papermill into book/chapters "
                                           "and build the Jupyter Book into _build/html.")
    _add_run_options(book)
    book.add_argument("--no-build", action="store_true", help="execute the notebooks only")

    _add_audit_parser(commands)

    show = commands.add_parser("config", help="print a resolved configuration",
                               description="Print the resolved RunConfig of a profile with overrides.")
    _add_run_options(show)
    show.add_argument("--fields", action="store_true",
                      help="list every field with its type, default and where the default comes from")
    return parser


def _add_audit_parser(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser(
        "audit", help="compare the evidence of two checkpoints of a Keras classifier",
        description="Compare the CAM evidence of two Keras models of one architecture on a folder of images; "
                    "write per-image metrics, a JSON summary and an offline HTML report. Exit status 3 when a "
                    "--fail-if condition holds.")
    audit.add_argument("--before", required=True, metavar="A", help="earlier model (.keras, or a legacy .h5 model)")
    audit.add_argument("--after", required=True, metavar="B", help="later model of the same architecture")
    audit.add_argument("--data-dir", required=True, metavar="ROOT",
                       help="images: split folders ROOT/<split>/<class>/, a manifest.csv, class folders, or a "
                            "flat folder (unlabelled)")
    audit.add_argument("--split", default="test", help="split to audit (default test)")
    audit.add_argument("--out", default="runs/audit", metavar="DIR", help="audit directory (default runs/audit)")
    audit.add_argument("--layer", help="explained layer, `base/layer` inside a nested model (default: the last "
                                       "spatial map before global pooling)")
    audit.add_argument("--target", choices=("label", "predicted"), default="label",
                       help="explained class: the true label, or the later model's prediction")
    audit.add_argument("--preprocess", default="none",
                       choices=("none", "unit", "densenet", "resnet_v2", "inception_v3"),
                       help="applied to 0..255 RGB pixels; none (default) when the model holds its own")
    audit.add_argument("--classes", help="class names in the models' output order, comma-separated (default: "
                                         "sorted class folder names, as keras.utils.image_dataset_from_directory)")
    audit.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="audit setting, e.g. -p n_boot 200 -p methods layercam,gradcampp")
    audit.add_argument("--fail-if", action="append", default=[], metavar="CONDITION",
                       help='fail (exit 3) when a summary statistic meets a condition, e.g. "overlap_iou<0.5"')
    audit.add_argument("--no-report", action="store_true", help="skip the HTML report")


def _cmd_audit(args: argparse.Namespace) -> int:
    from . import audit

    settings = audit.AuditSettings.from_pairs(args.param)
    for condition in args.fail_if:  # a malformed condition fails before the work, not after
        audit.parse_condition(condition)
    result = audit.run_audit(args.before, args.after, args.data_dir, args.out, split=args.split, layer=args.layer,
                             target=args.target, preprocess=args.preprocess,
                             classes=args.classes.split(",") if args.classes else None, settings=settings,
                             report=not args.no_report)
    print(audit.describe(result))
    failures = audit.failed_conditions(result.summary["statistics"], args.fail_if)
    for failure in failures:
        print(f"cxrdrift: audit gate failed: {failure}", file=sys.stderr)
    return audit.EXIT_GATE if failures else 0


def _cmd_data(args: argparse.Namespace) -> int:
    from . import data

    if args.data_command == "synth":
        from . import synth

        out = synth.generate_dataset(args.out, {"train": args.train, "val": args.val, "test": args.test},
                                     size=args.size, seed=args.seed, lungs=args.lung_masks)
        print(f"synthetic dataset written to {out}")
        return 0
    if args.data_command == "split":
        from . import split

        manifest, problems = split.write_split(args.root, args.out, val=args.val, test=args.test, seed=args.seed,
                                               group_by=args.group_by,
                                               class_map=data.parse_class_map(args.class_map))
        for problem in problems:
            print(f"{problem.severity.upper()}: {problem.message}")
        print(split.split_table(manifest).to_string())
        print(f"manifest written to {args.out}")
        return 0
    report = data.check(args.root, class_map=args.class_map,
                        min_side=data.MIN_SIDE if args.min_size is None else args.min_size)
    print(data.format_report(report))
    return 0 if report.ok else 1


def _cmd_config(args: argparse.Namespace) -> int:
    if args.fields:
        for row in cfg.describe_fields():
            print(f"{row['field']:<24} {row['type']:<14} {row['default']:<22} {row['source']}")
            print(f"{'':<24} {row['help']}")
        return 0
    print(json.dumps(_config_from(args).to_dict(), indent=2))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from . import pipeline

    pipeline.run_all(_config_from(args), force=args.force)
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from . import book

    html = book.run_book(_config_from(args), force=args.force, build=not args.no_build)
    if html is not None:
        print(f"book built: {html / 'index.html'}")
    return 0


_COMMANDS = {"data": _cmd_data, "config": _cmd_config, "run": _cmd_run, "book": _cmd_book, "audit": _cmd_audit}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        if os.environ.get("CXRDRIFT_DEBUG"):
            raise
        print(f"cxrdrift: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
