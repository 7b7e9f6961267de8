"""`python -m trainer train|eval|export|sample`: one config file drives all four.

    python -m trainer train  --config trainer/configs/mllm_sft_tiny.yaml [--data DIR] [--set key=value ...]
    python -m trainer train  --config CONFIG --dry-run [--world-size N] [--samples-per-micro-batch S]
        -> the model built on the meta device (parameters per group), the data mix per epoch and the step count
    python -m trainer eval   --config CONFIG [--checkpoint latest|TAG|base] [--data DIR] [--out FILE] [--limit N]
                             [--split eval|all]   (default eval: the held-out scenes' rows only; stops when
                                                   they share scene ids with the config's training rows)
        -> <run.out_dir>/eval/<tag>.json: {"checkpoint", "step", "samples", "overall",
           "per_subtask": {name: {"n", "metric", "score"}}, "predictions"} (trainer/evaluation/spatial_qa.py)
    python -m trainer export --config CONFIG [--checkpoint latest|TAG] --out DIR
    python -m trainer sample --config CONFIG [--checkpoint latest|TAG|all] [--out DIR]   (image generators)
        -> <run.out_dir>/samples/<tag>/: grid.png, sample-NNN.png, samples.json (checkpoint, prompts, files)

Launch `train` with torchrun or the `deepspeed` launcher (`deepspeed --hostfile H --module trainer train ...`)
for several processes or nodes; the config is the same.
Errors in the config, the data or a checkpoint are one line on stderr (exit 2); a non-finite loss stops
training with exit code 3 and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from itertools import islice
from pathlib import Path
from typing import Any

from trainer.config import TrainConfig, load_config
from trainer.core import ExampleError, TrainerError

EXIT_BAD_INPUT = 2
EXIT_NON_FINITE = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _load(args: argparse.Namespace) -> TrainConfig:
    return load_config(Path(args.config), args.set, Path(args.data) if args.data else None)


def _cmd_train(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.dry_run:
        from trainer.plan import dry_run

        print(dry_run(config, world_size=args.world_size, samples_per_micro_batch=args.samples_per_micro_batch))
        return 0
    from trainer.loop import NonFiniteLoss, train

    try:
        result = train(config)
    except NonFiniteLoss as exc:
        print(f"trainer: {exc}", file=sys.stderr)
        return EXIT_NON_FINITE
    if result.losses and int(os.environ.get("RANK", "0")) == 0:
        print(f"trained steps {result.steps[0]}-{result.steps[-1]}: loss {result.losses[0]:.4f} -> "
              f"{result.losses[-1]:.4f}; logs in {config.run.out_dir}", file=sys.stderr)
    return 0


def _eval_datasets(args: argparse.Namespace, config: TrainConfig, schemas: tuple[str, ...]) -> list[Any]:
    """The datasets eval reads, each with rows in the split; held-out rows must not share a scene with training."""
    from trainer.data import index_dataset, scene_ids

    datasets = []
    for spec in config.data.datasets:
        try:
            index_dataset(spec.path, schemas, args.split)
        except TrainerError:
            continue  # e.g. general-domain rows: never held out, nothing to evaluate there
        datasets.append(spec)
    if not datasets:
        searched = ", ".join(str(spec.path) for spec in config.data.datasets)
        raise TrainerError(f"no accepted split={args.split} rows in {searched} "
                           "(QA jobs hold out reader.eval_fraction of the scenes)")
    if args.split == "eval":
        training = _load(argparse.Namespace(config=args.config, set=args.set, data=None)).data.datasets
        held_out = set().union(*(scene_ids(spec, schemas, "eval") for spec in datasets))
        for spec in training:
            try:
                shared = held_out & scene_ids(spec, schemas, "train")
            except TrainerError:
                continue  # not written yet, or no training rows: nothing to leak
            if shared:
                raise TrainerError(f"eval shards share {len(shared)} scene ids with the training data {spec.path} "
                                   f"(e.g. {sorted(shared)[0]}): not a held-out evaluation")
    return datasets


def _cmd_eval(args: argparse.Namespace) -> int:
    from trainer import checkpoint
    from trainer.data import iter_accepted
    from trainer.core import task_class
    from trainer.evaluation.spatial_qa import eval_result_path
    from trainer.loop import trained_model

    config = _load(args)
    datasets = _eval_datasets(args, config, task_class(config.task.name).schemas())
    tag = "base" if args.checkpoint == "base" else checkpoint.resolve_tag(
        checkpoint.checkpoint_root(config.run.out_dir), args.checkpoint)
    task, model = trained_model(config, tag)
    samples = (sample for spec in datasets for sample in iter_accepted(spec, task.schemas(), args.split))
    scores = task.evaluate(model, islice(samples, args.limit) if args.limit else samples)
    results = {"checkpoint": tag, "step": 0 if tag == "base" else checkpoint.tag_step(tag), **scores}
    out = Path(args.out) if args.out else eval_result_path(config.run.out_dir, tag)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    summary = {key: value for key, value in results.items() if key != "predictions"}
    print(json.dumps(summary, ensure_ascii=False))
    print(f"eval: {tag} -> {out}", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from trainer.loop import trained_model

    config = _load(args)
    task, model = trained_model(config, args.checkpoint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task.export(model, out)
    print(f"export: {args.checkpoint} -> {out}", file=sys.stderr)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from trainer import checkpoint
    from trainer.loop import load_checkpoint_weights, trained_model
    from trainer.sampling import samples_dir

    config = _load(args)
    root = checkpoint.checkpoint_root(config.run.out_dir)
    if args.checkpoint == "all":
        if args.out:
            raise TrainerError("sample --checkpoint all writes one directory per checkpoint; drop --out")
        tags = checkpoint.saved_tags(root)
    else:
        tags = [checkpoint.resolve_tag(root, args.checkpoint)]
    task, model = trained_model(config, tags[0])
    for tag in tags:
        if tag != tags[0]:
            load_checkpoint_weights(model, config, tag)
        out = Path(args.out) if args.out else samples_dir(config.run.out_dir, tag)
        out.mkdir(parents=True, exist_ok=True)
        grid = task.write_samples(model, out, tag)
        print(f"sample: {tag} -> {grid}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m trainer", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # The `deepspeed` launcher puts --local_rank=N before the command; the rank is read from LOCAL_RANK instead.
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, handler, help_text in (("train", _cmd_train, "train or resume"),
                                     ("eval", _cmd_eval, "score a checkpoint on held-out shards"),
                                     ("export", _cmd_export, "write a checkpoint as safetensors + config"),
                                     ("sample", _cmd_sample, "generate the configured sample grid from a checkpoint")):
        command = commands.add_parser(name, help=help_text)
        command.set_defaults(handler=handler)
        command.add_argument("--config", required=True)
        command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
        command.add_argument("--data", help="train/evaluate on this one shard directory instead")
        if name == "train":
            command.add_argument("--dry-run", action="store_true",
                                 help="build the model on the meta device, plan the data mix and the step count, "
                                      "print them and exit (trainer/plan.py)")
            command.add_argument("--world-size", type=int, default=1, help="ranks to plan a dry run for")
            command.add_argument("--samples-per-micro-batch", type=float,
                                 help="dry run: mean samples per micro-batch (packing tasks: per pack; "
                                      "default engine.micro_batch_size)")
        if name != "train":
            extra = {"eval": ", or base", "sample": ", or all (every saved checkpoint, in step order)"}.get(name, "")
            command.add_argument("--checkpoint", default="latest", help="latest, a tag such as step-00000100" + extra)
        if name == "eval":
            command.add_argument("--out", help="result JSON (default: <run.out_dir>/eval/<checkpoint tag>.json; "
                                               "format in trainer/evaluation/spatial_qa.py)")
            command.add_argument("--limit", type=int, default=0, help="evaluate at most N samples")
            command.add_argument("--split", choices=("eval", "all"), default="eval",
                                 help="eval (default): rows of held-out scenes only; all: every accepted row")
        if name == "export":
            command.add_argument("--out", required=True)
        if name == "sample":
            command.add_argument("--out", help="directory (default: <run.out_dir>/samples/<checkpoint tag>/ with "
                                               "grid.png, sample-NNN.png and samples.json listing the prompts)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (TrainerError, ExampleError) as exc:
        print(f"trainer: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
