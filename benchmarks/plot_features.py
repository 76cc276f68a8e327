"""Do ``lightvid features`` embeddings separate the classes? PCA picture and nearest-neighbour accuracy.

    lightvid features runs/quickstart/checkpoints/best.ckpt .cache/synth-motion10/val --out feats
    python benchmarks/plot_features.py feats [--png docs/img/features_pca.png]

Reads the finished shards (video embeddings and labels from the index), prints the
leave-one-out 1-nearest-neighbour accuracy (cosine) of the video embeddings and the
same for the clip embeddings, and draws the first two principal components coloured by label.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightvid.analysis.features import load_features  # noqa: E402


def loo_1nn(x: np.ndarray, labels: list[str], groups: list[str] | None = None) -> float:
    """Leave-one-out 1-NN accuracy under cosine similarity (a query never matches its own video)."""
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    if groups is not None:
        g = np.asarray(groups)
        sim[g[:, None] == g[None, :]] = -np.inf
    nn = sim.argmax(1)
    lab = np.asarray(labels)
    return float((lab[nn] == lab).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("features")
    ap.add_argument("--png", default=None)
    args = ap.parse_args()
    vids, vrows = load_features(args.features, "videos")
    clips, crows = load_features(args.features, "clips")
    vlab = [r["label"] for r in vrows]
    print(f"{len(vids)} videos, {vids.shape[1]}-d: leave-one-out 1-NN accuracy {loo_1nn(vids, vlab):.3f} "
          f"(chance {max(vlab.count(v) for v in set(vlab)) / len(vlab):.3f})")
    print(f"{len(clips)} clips: 1-NN accuracy across videos "
          f"{loo_1nn(clips, [r['label'] for r in crows], [r['path'] for r in crows]):.3f}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.decomposition import PCA

        pc = PCA(2).fit_transform(vids)
        fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=90)
        for name in sorted(set(vlab)):
            sel = np.asarray(vlab) == name
            ax.scatter(pc[sel, 0], pc[sel, 1], s=10, label=name)
        ax.set_title(f"video embeddings (pre_logits), PCA: {len(vids)} videos", fontsize=9)
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        ax.legend(fontsize=7, markerscale=1.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        fig.savefig(args.png)
        plt.close(fig)


if __name__ == "__main__":
    main()
