"""TRL's side of benchmarks/peers/trl_sft.py, run by the TRL environment's python (it imports nothing of ours).

Trains one epoch of SFTTrainer with BFD packing (padding-free) over pre-tokenized conversations (`input_ids`,
`completion_mask`, loss on the completion only) and writes a JSON report: the seconds from the start of
training to the end of the last step, the steps, the tokens in the packed dataset and the mean logged loss.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import SFTConfig, SFTTrainer


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.started = self.last_step_end = None
        self.steps = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        self.last_step_end = time.time()
        self.steps += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--model", "--data", "--out", "--report"):
        parser.add_argument(name, type=Path, required=True)
    parser.add_argument("--pack-length", type=int, required=True)
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    model = AutoModelForCausalLM.from_pretrained(str(args.model), dtype=torch.float32, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    config = SFTConfig(
        output_dir=str(args.out), max_length=args.pack_length, packing=True, packing_strategy="bfd",
        completion_only_loss=True, per_device_train_batch_size=1, gradient_accumulation_steps=1,
        num_train_epochs=1, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=0.0, max_grad_norm=1.0, gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
        report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0,
        seed=0)
    clock = StepClock()
    trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(records),
                         processing_class=tokenizer, callbacks=[clock])
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    args.report.write_text(json.dumps({
        "seconds": clock.last_step_end - clock.started, "steps": clock.steps,
        "tokens": sum(len(ids) for ids in trainer.train_dataset["input_ids"]),
        "mean_loss": sum(losses) / len(losses)}) + "\n")


if __name__ == "__main__":
    main()
