"""Train a credit model with the tax bureau's data, without seeing it, then score new applicants.

Run this at the bank's node. The tax bureau (host: income, tax paid,
social-insurance months) and the platform operator (arbiter: holds the
encryption key) must be running ``pcnode serve``, and the tax bureau must have
granted the bank ``fl`` on its dataset with PSI mode ``both``::

    # at tax: pcnode approve TAX_HOME APP_ID --psi-modes both   (after `pcnode apply ... --ops fl`)
    python examples/credit_model.py .demo/bank --host tax:TAX-RESIDENTS-2026 \\
        --dataset BANK-APPLICANTS --label default --epochs 10 --score BANK-APPLICANTS

Adapt the dataset codes, the label and the features to your own data. The
bank sees the model's quality (AUC, accuracy, KS) and its own weights; the
tax bureau keeps its weights and never sends a row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.sdk import Node
from pcnode.errors import PcnodeError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("home", help="the bank node's home directory")
    ap.add_argument("--host", default="tax:TAX-RESIDENTS-2026",
                    help="HOST:DATASET_CODE of the data provider")
    ap.add_argument("--arbiter", default="operator", help="the node that holds the HE key")
    ap.add_argument("--dataset", default="BANK-APPLICANTS", help="our dataset with the label")
    ap.add_argument("--label", default="default", help="our 0/1 label column")
    ap.add_argument("--features", default="",
                    help="our feature columns, comma-separated (default: all numeric ones)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--learning-rate", type=float, default=0.3)
    ap.add_argument("--l2", type=float, default=1e-4, help="L2 regularisation")
    ap.add_argument("--holdout", type=float, default=0.2,
                    help="share of the common rows kept aside to measure the model honestly")
    ap.add_argument("--score", metavar="DATASET", help="also score this dataset of ours")
    ap.add_argument("--out", default="credit_scores.csv", help="where the scores go")
    args = ap.parse_args()

    host, _, host_dataset = args.host.partition(":")
    features = [c for c in args.features.split(",") if c]

    def show_epoch(epoch: int, epochs: int, loss: float | None) -> None:
        print(f"  epoch {epoch}/{epochs}: loss {loss:.5f}")

    try:
        with Node(args.home) as bank:
            print(f"training with {host} (features) and {args.arbiter} (key holder) ...")
            model = bank.fl_train(hosts={host: host_dataset}, arbiter=args.arbiter,
                                  dataset=args.dataset, label=args.label, features=features,
                                  epochs=args.epochs, batch_size=args.batch_size,
                                  learning_rate=args.learning_rate, l2=args.l2,
                                  holdout=args.holdout, on_epoch=show_epoch)
            print(f"model {model.id} (version {model.version}) trained on {model.rows} "
                  f"applicants that {host} also knows")
            print(f"  AUC {model.metrics['auc']:.4f} on the training rows")
            if model.holdout_metrics:
                print(f"  AUC {model.holdout_metrics['auc']:.4f} on held-out rows   "
                      "<- note: the honest estimate; our tests check that federated training "
                      "lands within 0.01 AUC of training on the pooled data")
            if args.score:
                scores = model.predict(args.score, out=args.out)
                print(f"scored {len(scores.keys)} applicants into {args.out} "
                      f"({scores.rows_not_found} unknown to {host} were skipped)")
    except PcnodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
