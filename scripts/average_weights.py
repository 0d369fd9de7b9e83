"""Average the weights of several fine-tuned checkpoints of one encoder (a "model soup").

Runs that start from the same weights and differ only in seed and data order stay in one basin;
their average is often better than either and costs nothing at inference (Wortsman et al., 2022,
"Model soups"). Keep the average only if ``scripts/eval_offsets.py`` and the benchmark say so.

    python scripts/average_weights.py runs/a/lipsync.pt runs/b/lipsync.pt -o runs/soup/lipsync.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dubalign.encoder import save_checkpoint  # noqa: E402
from dubalign.model import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", type=Path, help="checkpoints of one design")
    ap.add_argument("-o", "--out", type=Path, required=True, help="where to write the average")
    args = ap.parse_args()
    if len(args.checkpoints) < 2:
        sys.exit("error: give at least two checkpoints to average")
    encoders = [load_model(p).encoder for p in args.checkpoints]
    if len({repr(e.cfg) for e in encoders}) != 1:
        sys.exit("error: the checkpoints have different configurations; only one design can be averaged")
    states = [e.state_dict() for e in encoders]
    average = {k: sum(s[k].float() for s in states) / len(states) for k in states[0]}
    soup = encoders[0]
    soup.load_state_dict({k: v.to(states[0][k].dtype) for k, v in average.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_checkpoint(soup, args.out)
    print(f"wrote {args.out} (sha256 {digest[:12]}...), the mean of {len(states)} checkpoints")


if __name__ == "__main__":
    main()
