"""`python -m trainer.rewards serve --config rewards.yaml [--host H] [--port P]`: the HTTP reward service
(trainer/rewards/http.py) for the rewards listed under the config's `rewards:`.
`python -m trainer.rewards convert KIND --checkpoint PATH --out DIR [...]`: a published human-preference
checkpoint to the directory its reward loads (trainer/rewards/convert.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from trainer.core import TrainerError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.rewards", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the config's rewards over HTTP")
    serve.add_argument("--config", type=Path, required=True, help="YAML with a `rewards:` list of reward specs")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8500, help="0 picks a free port (printed)")
    convert = commands.add_parser("convert", help="convert a published preference checkpoint for its reward")
    convert.add_argument("kind", choices=("hps_v2", "image_reward", "hps_v3"))
    convert.add_argument("--checkpoint", type=Path, required=True,
                         help="HPS_v2(.1)_compressed.pt, ImageReward.pt or HPSv3.safetensors")
    convert.add_argument("--out", type=Path, required=True, help="the directory to write (the reward's model_path)")
    convert.add_argument("--bpe", type=Path, help="hps_v2: open_clip's bpe_simple_vocab_16e6.txt.gz "
                                                  "(default: the one an installed open_clip or clip bundles)")
    convert.add_argument("--bert-tokenizer", type=Path, help="image_reward: a bert-base-uncased tokenizer directory")
    convert.add_argument("--head-width", type=int, nargs=2, metavar=("IMAGE", "TEXT"),
                         help="hps_v2, image_reward: attention head widths (default: the published architecture's)")
    convert.add_argument("--base-model", type=Path, help="hps_v3: the Qwen2-VL-7B-Instruct directory (config, "
                                                         "tokenizer, image processor, chat template)")
    convert.add_argument("--hpsv3-package", type=Path,
                         help="hps_v3: the installed hpsv3 package's folder, whose instruction text is copied "
                              "(default: hpsv3 installed here)")
    args = parser.parse_args(argv)
    if args.command == "convert":
        return run_convert(args)

    from trainer.rewards import build_reward

    try:
        specs = (yaml.safe_load(args.config.read_text()) or {}).get("rewards")
        if not isinstance(specs, list) or not specs:
            raise TrainerError(f"{args.config}: needs a non-empty `rewards:` list of reward specs")
        hosted = [spec for spec in specs if isinstance(spec, dict) and (spec.get("http") or spec.get("remote"))]
        if hosted:
            raise TrainerError(f"{args.config}: the service builds its rewards itself; drop `http`/`remote` "
                               f"from {', '.join(str(spec.get('name')) for spec in hosted)}")
        from trainer.rewards.mixing import validate_reward_specs

        try:
            validate_reward_specs(specs)
        except ValueError as exc:
            raise TrainerError(f"{args.config}: {exc}") from None
        rewards = {spec.get("key", spec["name"]): build_reward(spec) for spec in specs}
    except (OSError, yaml.YAMLError, TrainerError) as exc:
        print(f"python -m trainer.rewards: error: {exc}", file=sys.stderr)
        return 2
    from trainer.rewards.http import serve_rewards

    server = serve_rewards(rewards, args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {','.join(rewards)} on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from trainer.rewards import convert

    try:
        if args.kind == "hps_v2":
            widths = args.head_width or (convert.HPS_V2_VISION_HEAD_WIDTH, convert.HPS_V2_TEXT_HEAD_WIDTH)
            convert.convert_hps_v2(args.checkpoint, args.out, args.bpe, *widths)
        elif args.kind == "image_reward":
            if args.bert_tokenizer is None:
                raise TrainerError("image_reward: pass --bert-tokenizer DIR (a bert-base-uncased tokenizer directory)")
            widths = args.head_width or (convert.IMAGE_REWARD_VISION_HEAD_WIDTH, convert.IMAGE_REWARD_TEXT_HEAD_WIDTH)
            convert.convert_image_reward(args.checkpoint, args.out, args.bert_tokenizer, *widths)
        else:
            if args.base_model is None:
                raise TrainerError("hps_v3: pass --base-model DIR (the Qwen2-VL-7B-Instruct directory)")
            convert.convert_hps_v3(args.checkpoint, args.out, args.base_model, args.hpsv3_package)
    except (OSError, TrainerError) as exc:
        print(f"python -m trainer.rewards convert: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.kind} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
