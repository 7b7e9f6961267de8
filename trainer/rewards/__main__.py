"""`python -m trainer.rewards serve --config rewards.yaml [--host H] [--port P]`: the HTTP reward service
(trainer/rewards/http.py) for the rewards listed under the config's `rewards:`."""

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
    args = parser.parse_args(argv)

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


if __name__ == "__main__":
    raise SystemExit(main())
