"""Our packed SFT (trainer/, task `mllm_sft`) against TRL's `SFTTrainer` with padding-free packing, on the same
model, the same tokens and the same cores.

- Model: the tiny Qwen3-VL of `make tiny-models` for ours; for TRL, its language model copied into a
  `Qwen3ForCausalLM` (the same weights: on text, Qwen3-VL's interleaved M-RoPE with equal axes is plain RoPE,
  so both compute the same function; `text_model_from_vl` checks the logits agree before anything is timed).
- Data: text-only conversations (a user prompt, an assistant answer of long-tailed length), written as a
  `qa_conversation` shard for ours and tokenized by OUR chat formatter for TRL (`input_ids` +
  `completion_mask`), so both train on the same token sequences with loss on the same answer tokens.
- Settings: one epoch, packs of `--pack-length` tokens (ours: first-fit decreasing over the whole set, TRL:
  its best-fit decreasing), AdamW at a constant learning rate, fp32, no gradient checkpointing, one pack per
  optimizer step, `--threads` torch threads on the same cores (taskset) for both.

Timed: from the start of the first training step to the end of the last (each side's own log; model loading
and the final checkpoint excluded; ours tokenizes inside that window, TRL before it). tokens_per_s =
the epoch's tokens / those seconds; tokens_per_s_ratio = ours / TRL (goal >= 1.0 on CPU).

    python -m benchmarks.peers.trl_sft --peer-env ~/.cache/joyai-envs/peer-trl-KEY
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch
import yaml

from benchmarks.common import SelfTimed, interleaved, load_average, ratio_spread, spread, write_result
from data_engine.model_refs import tiny_model_path
from data_engine.output_dir import standalone_manifest, write_manifest
from data_engine.schemas import QA_CONVERSATION
from data_engine.shards import write_shard
from trainer.models import qwen_vl

NAME = "peer_trl_sft"
GOAL = 1.0
WORKER = Path(__file__).with_name("trl_worker.py")
LEARNING_RATE = 1e-4


def conversations(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """(prompt, answer) pairs of English words (wordfreq's frequent words); answer lengths long-tailed."""
    from wordfreq import top_n_list

    words = top_n_list("en", 5000)
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        prompt = " ".join(rng.choices(words, k=rng.randint(8, 40))) + "?"
        answer_words = int(min(300, max(3, rng.lognormvariate(3.5, 0.8))))
        pairs.append((prompt, " ".join(rng.choices(words, k=answer_words)) + "."))
    return pairs


def write_sft_shard(out_dir: Path, pairs: list[tuple[str, str]]) -> None:
    rows = [{"id": f"peer-sft-{i:05d}", "source_dataset": "peer_sft", "upstream_id": str(i), "license": "CC0-1.0",
             "images": [], "task": "text_sft", "metadata": "{}", "split": "train",
             "messages": [{"role": "user", "content": [{"type": "text", "text": prompt, "image_index": None}]},
                          {"role": "assistant", "content": [{"type": "text", "text": answer, "image_index": None}]}]}
            for i, (prompt, answer) in enumerate(pairs)]
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    write_shard(out_dir, 0, pa.Table.from_pylist(rows, schema=QA_CONVERSATION.arrow()), [{"name": "peer_sft",
                                                                                        "rows_in": len(rows)}])
    write_manifest(out_dir, standalone_manifest(QA_CONVERSATION, "peer_sft", {"rows": len(rows)}, [len(rows)]))


def tokenized_for_trl(pairs: list[tuple[str, str]], vl_dir: Path) -> list[dict[str, list[int]]]:
    """Our formatter's tokens per conversation; completion_mask marks the tokens our targets train on (a target
    at position i is token i+1: TRL's labels are the tokens themselves, shifted inside the model)."""
    formatter = qwen_vl.ChatFormatter(qwen_vl.load_processor(vl_dir, None, None))
    records = []
    for prompt, answer in pairs:
        example = formatter.format([{"role": "user", "content": [{"type": "text", "text": prompt}]},
                                    {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                                   [], general_domain=False, task="text_sft")
        trained = (example.targets != qwen_vl.IGNORE).long().tolist()
        records.append({"input_ids": example.input_ids.tolist(), "completion_mask": [0] + trained[:-1]})
    return records


def text_model_from_vl(vl_dir: Path, out_dir: Path) -> int:
    """Write the language model of the Qwen3-VL in `vl_dir` as a Qwen3ForCausalLM (plus its tokenizer) and
    check that both give the same logits on packed text; returns the parameter count of the text model."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM, Qwen3VLForConditionalGeneration

    vl = Qwen3VLForConditionalGeneration.from_pretrained(str(vl_dir), dtype=torch.float32).eval()
    text = vl.config.text_config
    config = Qwen3Config(vocab_size=text.vocab_size, hidden_size=text.hidden_size,
                         intermediate_size=text.intermediate_size, num_hidden_layers=text.num_hidden_layers,
                         num_attention_heads=text.num_attention_heads, num_key_value_heads=text.num_key_value_heads,
                         head_dim=text.head_dim, max_position_embeddings=text.max_position_embeddings,
                         rms_norm_eps=text.rms_norm_eps, tie_word_embeddings=text.tie_word_embeddings,
                         attention_bias=text.attention_bias, hidden_act=text.hidden_act,
                         bos_token_id=text.bos_token_id, eos_token_id=text.eos_token_id,
                         rope_parameters={"rope_type": "default", "rope_theta": text.rope_parameters["rope_theta"]})
    model = Qwen3ForCausalLM(config).eval()
    prefix = "model.language_model."
    state = {("model." + key[len(prefix):]) if key.startswith(prefix) else key: value
             for key, value in vl.state_dict().items() if not key.startswith("model.visual.")}
    model.load_state_dict(state, strict=True)
    lengths = (17, 40, 7)
    ids = torch.randint(0, text.vocab_size, (1, sum(lengths)))
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        ours = vl(input_ids=ids, position_ids=positions.expand(4, 1, -1)).logits
        theirs = model(input_ids=ids, position_ids=positions).logits
    if not torch.allclose(ours, theirs, atol=1e-5):
        raise RuntimeError(f"the text model differs from the Qwen3-VL language model by "
                           f"{float((ours - theirs).abs().max())}")
    model.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(str(vl_dir)).save_pretrained(out_dir)
    return sum(p.numel() for p in model.parameters())


def our_config(shard_dir: Path, out_dir: Path, rows: int, pack_length: int) -> dict[str, Any]:
    return {
        "task": {"name": "mllm_sft", "config": {"model_path": "tiny:qwen3vl", "max_length": pack_length,
                                                "packing": True, "kd_weight": 0.0}},
        "data": {"window": rows, "datasets": [{"name": "sft", "path": str(shard_dir)}]},
        "optim": {"lr": LEARNING_RATE, "schedule": "constant", "warmup_steps": 0, "grad_clip": 1.0},
        "engine": {"zero_stage": 0, "precision": "fp32", "micro_batch_size": 1, "grad_accum_steps": 1},
        "run": {"out_dir": str(out_dir), "epochs": 1, "save_every": 0, "log_every": 1, "resume": False,
                "progress": False, "tensorboard": False},
    }


def our_training_window(log_path: Path) -> tuple[float, int, float]:
    """(seconds from the run's start event to its last step, steps, mean loss of the steps) from train_log."""
    events = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    start = next(event["time"] for event in events if event["event"] == "start")
    steps = [event for event in events if event["event"] == "step"]
    return steps[-1]["time"] - start, len(steps), sum(event["sft"] for event in steps) / len(steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-env", type=Path, required=True, help="the TRL venv (scripts/setup_peer_env.sh)")
    parser.add_argument("--conversations", type=int, default=160)
    parser.add_argument("--pack-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path("out/bench-peers/trl_sft"))
    args = parser.parse_args(argv)
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    vl_dir = tiny_model_path("qwen3vl")
    pairs = conversations(args.conversations)
    shard_dir, data_path, text_dir = work / "sft_shards", work / "sft_tokens.jsonl", work / "qwen3_text"
    write_sft_shard(shard_dir, pairs)
    records = tokenized_for_trl(pairs, vl_dir)
    data_path.write_text("".join(json.dumps(record) + "\n" for record in records))
    parameters = text_model_from_vl(vl_dir, text_dir)
    tokens = sum(len(record["input_ids"]) for record in records)
    trained_tokens = sum(sum(record["completion_mask"]) for record in records)
    if max(len(record["input_ids"]) for record in records) > args.pack_length:
        raise SystemExit(f"a conversation is longer than the pack length {args.pack_length}")
    config_path, our_out = work / "ours.yaml", work / "ours_run"
    config_path.write_text(yaml.safe_dump(our_config(shard_dir, our_out, len(pairs), args.pack_length)))
    pin = ["taskset", "-c", f"0-{args.threads - 1}"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": str(args.threads),
           "TOKENIZERS_PARALLELISM": "false"}

    def run(command: list[str], log: Path) -> None:
        with log.open("w") as out:
            if subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed; see {log}")

    def ours() -> SelfTimed:
        shutil.rmtree(our_out, ignore_errors=True)
        run([*pin, sys.executable, "-m", "trainer", "train", "--config", str(config_path)], work / "ours.log")
        seconds, steps, loss = our_training_window(our_out / "train_log.jsonl")
        return SelfTimed(seconds, {"steps": steps, "mean_sft_loss": round(loss, 4)})

    def theirs() -> SelfTimed:
        report = work / "trl_report.json"
        run([*pin, str(args.peer_env / "bin" / "python"), str(WORKER), "--model", str(text_dir), "--data",
             str(data_path), "--pack-length", str(args.pack_length), "--lr", str(LEARNING_RATE), "--threads",
             str(args.threads), "--out", str(work / "trl_run"), "--report", str(report)], work / "trl.log")
        result = json.loads(report.read_text())
        if result["tokens"] != tokens:
            raise RuntimeError(f"TRL trained on {result['tokens']} tokens, ours on {tokens}")
        return SelfTimed(result["seconds"], {"steps": result["steps"], "mean_sft_loss": round(result["mean_loss"], 4)})

    runs: dict = {}
    seconds = interleaved({"ours": ours, "trl": theirs}, repeats=args.repeats, last_values=runs)
    ours_s, trl_s = spread(seconds["ours"]), spread(seconds["trl"])
    ratio = trl_s["median"] / ours_s["median"]
    metrics = {"tokens_per_s_ratio": round(ratio, 3), "ours_tokens_per_s": round(tokens / ours_s["median"], 1),
               "trl_tokens_per_s": round(tokens / trl_s["median"], 1)}
    notes = {
        "goal": {"tokens_per_s_ratio": f">= {GOAL} on CPU"}, "goal_met": ratio >= GOAL,
        "conversations": len(pairs), "tokens_per_epoch": tokens, "trained_tokens_per_epoch": trained_tokens,
        "pack_length": args.pack_length, "torch_threads": args.threads, "parameters": parameters,
        "repeats": args.repeats, "warmup_rounds": 1, "interleaved": True,
        "seconds": {"ours": ours_s, "trl": trl_s},
        "tokens_per_s_ratio_per_round": ratio_spread(seconds["trl"], seconds["ours"]),
        "last_run": runs, "load_average_at_end": load_average(),
    }
    write_result(NAME, metrics, baseline="TRL SFTTrainer (packing, padding-free) on the same weights as a "
                 "Qwen3ForCausalLM, the same tokens and answer-only loss, same threads and cores",
                 command=f"make bench-peers (python -m benchmarks.peers.trl_sft --conversations {args.conversations} "
                         f"--pack-length {args.pack_length} --threads {args.threads} --repeats {args.repeats})",
                 notes=notes)


if __name__ == "__main__":
    main()
