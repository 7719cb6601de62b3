"""Train a tiny GPT-2 from scratch on a synthetic grammar with ProbAttrCallback (the README's main job).

The corpus comes from a hidden Markov model of English-like sentences whose probabilities are
exact, so the demo knows the process's own probe values: the true noise count is the floor a
converged model approaches. Prints a table of checkpoints (eval loss, KL from the true process
to the model, noise tokens of the model and of the process, mean |AS - true AS|) and the
Spearman correlations across checkpoints. Same as ``probattr-monitor demo``.

    python examples/train_tiny_lm.py --out out/demo --max-steps 2000
    tensorboard --logdir out/demo/runs
"""

import argparse

from probattr_monitor.demo.run import DemoConfig, run_demo

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--save-steps", type=int, default=100)
    args = parser.parse_args()
    run_demo(DemoConfig(output_dir=args.out, max_steps=args.max_steps, save_steps=args.save_steps))
