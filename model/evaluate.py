"""Measure the SERVED model and write its card: python -m model.evaluate [--model-dir model/]

Every figure goes through what production runs: the .tflite via server.inference.Classifier
(LiteRT, num_threads=1) and, for pen strokes, server.preprocess.render_strokes. Writes
card.json, confusion.png and rejection_roc.png beside the model, prints a table and a
README block.

The served model has seen every UNIPEN dev writer, so the pen-stroke figures come from the
leave-one-contributor-out folds in model/folds/<contributor>.tflite (each trained without
one contributor's digits and letters, `python -m model.train --holdout-contributor NAME`):
every digit, letter and probe is scored by the fold that never saw its institution, which
is how the model meets writers from other institutions. The "not a digit" threshold is
picked on those out-of-fold scores and written into the card for the server.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from model import data, strokes
from server.inference import Classifier
from server.preprocess import render_strokes
from server.reading import HEAD_WIDTH

MODEL_NAME = "digits-cnn"
LATENCY_RUNS = {1: 2000, 64: 200}  # batch size → timed calls (after warm-up)
WARMUP_RUNS = 20
LOAD_RUNS = 10
# Targets from the issue; the table prints pass/fail against them, tests never time.
TARGETS = {
    "mnist_digit_accuracy": 0.996,
    "mnist_accuracy_rejects_as_errors": 0.995,
    "loco_accuracy": 0.985,
    "false_accept_rate": 0.10,
    "settle_median_share": 5 / 8,
    "size_bytes": 2 * 1024 * 1024,
    "batch1_median_ms": 0.3,
}
CONTRIBUTORS = ("apb", "ced", "imp", "tos")
# The threshold keeps this share of held-out-contributor digits: the operating point that
# meets both acceptance bounds (>= 98.5% of strangers' digits kept, <= 10% of non-digits
# accepted) with room on each; at 99.5% kept, the false accepts were 10-20% per fold.
DIGIT_KEEP = 0.99
# A number is read wrong when any one part is rejected, so a part's threshold keeps more:
# 99.8% a part keeps 99% of 5-digit numbers whole (0.998 ** 5). On the fold models' dev
# numbers (python -m model.tune_numbers) it read 94.6% whole where DIGIT_KEEP's threshold
# read 93.5%; a part that is surely no digit is still answered "?".
NUMBER_DIGIT_KEEP = 0.998
REPORTED_KEEPS = (0.99, 0.995)
EVAL_SEED = 20261205  # probes and generated negatives: not the training seed
GENERATED_PER_FOLD = 2_000
SETTLE_CUTS = 8  # the drawing cut after k/8 of its points, k = 1..8
FOLD_NOTE = (
    "leave-one-contributor-out: each fold trained without one contributor's digits and "
    "letters, at a reduced budget (fewer epochs and MNIST images, see fold_training) to fit "
    "the machine; each contributor is scored by the fold that never saw it"
)


def accuracy_report(predicted: np.ndarray, labels: np.ndarray) -> dict:
    per_class = {str(k): round(float((predicted[labels == k] == k).mean()), 5) for k in range(10)}
    return {
        "n": int(len(labels)),
        "accuracy": round(float((predicted == labels).mean()), 5),
        "errors": int((predicted != labels).sum()),
        "per_class": per_class,
    }


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray) -> np.ndarray:
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def save_confusion_png(matrix: np.ndarray, accuracy: float, path: Path) -> None:
    """Off-diagonal counts are what matter at 99.6%, so the colour scale ignores the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = matrix * (1 - np.eye(10, dtype=np.int64))
    fig, ax = plt.subplots(figsize=(6, 5.4))
    image = ax.imshow(errors, cmap="Reds")
    for (i, j), count in np.ndenumerate(matrix):
        colour = "black" if i == j or count < errors.max() / 2 else "white"
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color=colour)
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true digit")
    ax.set_title(f"MNIST test (10,000 images), served .tflite: {accuracy:.2%}")
    fig.colorbar(image, ax=ax, label="misclassified images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def latency(classifier: Classifier, images: np.ndarray, batch: int, runs: int) -> dict:
    """Wall time of one predict() call (what the batcher pays), on real test images."""
    x = images[:batch]
    for _ in range(WARMUP_RUNS):
        classifier.predict(x)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        classifier.predict(x)
        times[i] = time.perf_counter() - start
    times_ms = times * 1e3
    return {
        "median_ms": round(float(np.median(times_ms)), 4),
        "p95_ms": round(float(np.percentile(times_ms, 95)), 4),
        "per_image_median_ms": round(float(np.median(times_ms)) / batch, 4),
        "runs": runs,
    }


def load_time_ms(path: Path) -> float:
    """Median Classifier.load (read, parse, allocate, warm-up call): the server's start-up cost."""
    times = []
    for _ in range(LOAD_RUNS):
        start = time.perf_counter()
        Classifier.load(path)
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 2)


def render_all(drawings: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Rendered inputs and the indices of drawings that had ink."""
    inputs = [render_strokes(d) if d else None for d in drawings]
    kept = np.array([i for i, x in enumerate(inputs) if x is not None], dtype=np.int64)
    return np.stack([inputs[i] for i in kept]), kept


def scores(classifier: Classifier, drawings: list[list[np.ndarray]]) -> np.ndarray:
    """(N, outputs) probabilities; a drawing without ink gets NaN."""
    x, kept = render_all(drawings)
    out = np.full((len(drawings), classifier.num_outputs), np.nan, np.float32)
    out[kept] = classifier.predict(x)
    return out


def verdict_right(p: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """The served answer is the right digit: not rejected, and the argmax digit is right."""
    return (p[:, :10].argmax(axis=1) == labels) & ~(p[:, 10] >= threshold)


def auroc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """P(a negative's "not a digit" score beats a digit's), ties counted half."""
    pos = np.sort(positives)
    below = np.searchsorted(pos, negatives, side="left")
    ties = np.searchsorted(pos, negatives, side="right") - below
    return float((below + ties / 2).sum() / (len(pos) * len(negatives)))


def keep_threshold(digit_scores: np.ndarray, keep: float) -> float:
    """The lowest threshold with at least `keep` of the digits scoring below it."""
    ordered = np.sort(digit_scores)
    index = min(int(np.ceil(keep * len(ordered))) - 1, len(ordered) - 1)
    return float(np.nextafter(ordered[index], np.float32(1)))


def save_roc_png(pos: np.ndarray, negatives: dict[str, np.ndarray], chosen: float, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.unique(np.concatenate([pos, *negatives.values(), [0.0, 1.0]]))
    keep = (pos[None, :] < thresholds[:, None]).mean(axis=1)
    fig, ax = plt.subplots(figsize=(6, 4.6))
    for name, neg in negatives.items():
        accepted = (neg[None, :] < thresholds[:, None]).mean(axis=1)
        ax.plot(accepted, keep, label=f"{name} (n={len(neg):,}, AUROC {auroc(pos, neg):.4f})")
    ax.axhline((pos < chosen).mean(), color="grey", ls=":", lw=1)
    ax.set(
        xscale="log",
        xlim=(1e-3, 1),
        ylim=(0.9, 1.001),
        xlabel="non-digits answered as a digit (false accepts)",
        ylabel="held-out-contributor digits kept",
        title=f"'not a digit' threshold {chosen:.3g} (dotted: digits kept)",
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def settle_cuts(classifier: Classifier, samples: list[dict]) -> np.ndarray:
    """(N, 8, outputs) probabilities for the drawing cut after k/8 of its points."""
    cuts = [
        strokes.point_prefix(s["strokes"], k / SETTLE_CUTS)
        for s in samples
        for k in range(1, SETTLE_CUTS + 1)
    ]
    return scores(classifier, cuts).reshape(len(samples), SETTLE_CUTS, -1)


def live_columns(p: np.ndarray) -> np.ndarray:
    """The live head's eleven columns of a two-head model's outputs (model/train.py), else
    the outputs themselves: live updates are read by that head."""
    return p[..., HEAD_WIDTH:] if p.shape[-1] == 2 * HEAD_WIDTH else p


def settle_report(cuts: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """After which share of its points each drawing's answer stays right to the end."""
    right = np.stack(
        [verdict_right(cuts[:, k], labels, threshold) for k in range(SETTLE_CUTS)], axis=1
    )
    # settle = first cut from which every later cut is right; SETTLE_CUTS + 1 = never
    stays = np.flip(np.cumprod(np.flip(right, axis=1), axis=1), axis=1).astype(bool)
    settle = np.where(stays.any(axis=1), stays.argmax(axis=1) + 1, SETTLE_CUTS + 1)
    counts = np.bincount(settle, minlength=SETTLE_CUTS + 2)[1:]
    return {
        "median_share": float(np.median(settle)) / SETTLE_CUTS,
        "median_eighths": float(np.median(settle)),
        "settled_after_k_eighths": {str(k + 1): int(c) for k, c in enumerate(counts[:-1])},
        "never_settled": int(counts[-1]),
        "right_at_cut": {
            f"{k + 1}/{SETTLE_CUTS}": round(float(right[:, k].mean()), 4)
            for k in range(SETTLE_CUTS)
        },
    }


def probe_drawings(samples: list[dict]) -> dict[str, tuple[list, np.ndarray]]:
    """Each synthesized style applied once to every real digit it fits, plus real 7s and 1s.

    Real 7s are the anti-probe: teaching continental 1s must not turn 7s into 1s.
    """
    rng = np.random.default_rng(EVAL_SEED)
    probes = {}
    for label, styles in strokes.STYLES.items():
        real = [s for s in samples if s["label"] == label]
        for style in styles:
            probes[style.__name__] = ([style(s["strokes"], rng) for s in real], label)
    for label, name in ((7, "real_7s"), (1, "real_1s")):
        probes[name] = ([s["strokes"] for s in samples if s["label"] == label], label)
    return probes


def fold_outputs(model_dir: Path, unipen: str | None, nondigits: str | None) -> dict | None:
    """Out-of-fold probabilities: each contributor's data scored by the fold without it."""
    digits = data.load_unipen(unipen)
    letters = data.load_nondigits(nondigits)
    folds = {}
    for name in CONTRIBUTORS:
        path = model_dir / "folds" / f"{name}.tflite"
        if not path.exists():
            continue
        classifier = Classifier.load(path, num_threads=1)
        mine = [s for s in digits if s["contributor"] == name]
        own_letters = [s for s in letters if s["contributor"] == name]
        negatives = [s for s in own_letters if not strokes.is_lookalike(s["label"])]
        generated = strokes.generated_negatives(
            GENERATED_PER_FOLD,
            np.random.default_rng(EVAL_SEED),
            [s["strokes"] for s in negatives],
        )
        log_path = model_dir / "folds" / f"{name}_train_log.json"
        folds[name] = {
            "labels": np.array([s["label"] for s in mine]),
            "digits": scores(classifier, [s["strokes"] for s in mine]),
            "cuts": settle_cuts(classifier, mine),
            "letters": scores(classifier, [s["strokes"] for s in negatives]),
            "lookalikes": scores(
                classifier,
                [s["strokes"] for s in own_letters if strokes.is_lookalike(s["label"])],
            ),
            "generated": scores(classifier, [x for _, x in generated]),
            "generated_kinds": np.array([kind for kind, _ in generated]),
            "probes": {
                probe: (scores(classifier, drawings), label)
                for probe, (drawings, label) in probe_drawings(mine).items()
            },
            "train_log": json.loads(log_path.read_text()) if log_path.exists() else None,
        }
    return folds or None


def loco_card(folds: dict, model_dir: Path) -> tuple[dict, dict]:
    """(card["unipen_loco"], card["rejection"]) from the out-of-fold predictions."""
    pos = np.concatenate([f["digits"][:, 10] for f in folds.values()])
    pos = pos[~np.isnan(pos)]
    neg = {
        "letters/symbols": np.concatenate([f["letters"][:, 10] for f in folds.values()]),
        "generated shapes": np.concatenate([f["generated"][:, 10] for f in folds.values()]),
    }
    neg = {k: v[~np.isnan(v)] for k, v in neg.items()}
    threshold = keep_threshold(pos, DIGIT_KEEP)
    save_roc_png(pos, neg, threshold, model_dir / "rejection_roc.png")
    both = np.concatenate(list(neg.values()))

    def accepted(scores_: np.ndarray, t: float) -> float:
        return round(float((scores_[~np.isnan(scores_)] < t).mean()), 5)

    at_keep = {}
    for keep in REPORTED_KEEPS:
        t = keep_threshold(pos, keep)
        at_keep[f"{keep:.1%}"] = {
            "threshold": round(t, 6),
            "false_accept_rate": accepted(both, t),
            **{f"false_accept_{k}": accepted(v, t) for k, v in neg.items()},
        }
    kinds = np.concatenate([f["generated_kinds"] for f in folds.values()])
    generated = np.concatenate([f["generated"][:, 10] for f in folds.values()])
    lookalikes = np.concatenate([f["lookalikes"][:, 10] for f in folds.values()])
    rejection = {
        "threshold": round(threshold, 6),
        "rule": "verdict not_a_digit when p[10] >= threshold, else the argmax of p[0:10]",
        "chosen_by": (
            f"keeps {DIGIT_KEEP:.1%} of out-of-fold digits of held-out contributors "
            "(leave-one-contributor-out folds)"
        ),
        "digit_keep_rate": round(float((pos < threshold).mean()), 5),
        "false_accept_rate": accepted(both, threshold),
        "false_accept_letters_symbols": accepted(neg["letters/symbols"], threshold),
        "false_accept_generated": accepted(neg["generated shapes"], threshold),
        "false_accept_generated_by_kind": {
            str(k): accepted(generated[kinds == k], threshold) for k in np.unique(kinds)
        },
        "lookalikes_answered_as_digit": accepted(lookalikes, threshold),
        "auroc": {k: round(auroc(pos, v), 5) for k, v in neg.items()},
        "auroc_all": round(auroc(pos, both), 5),
        "at_digit_keep": at_keep,
        "negatives": {k: int(len(v)) for k, v in neg.items()},
        "digits": int(len(pos)),
        "lookalike_policy": (
            "letters/symbols people read as a digit are neither trained nor measured as "
            "'not a digit': "
            + ", ".join(
                f"{''.join(c for c, d in strokes.LOOKALIKES.items() if d == digit)} -> {digit}"
                for digit in sorted(set(strokes.LOOKALIKES.values()))
            )
            + " (see model/strokes.py)"
        ),
        "plot": "rejection_roc.png",
    }
    number_threshold = keep_threshold(pos, NUMBER_DIGIT_KEEP)
    rejection["number_threshold"] = round(number_threshold, 6)
    rejection["number_rule"] = (
        "each part of a number-mode answer is not_a_digit when p[10] >= number_threshold: "
        f"it keeps {NUMBER_DIGIT_KEEP:.1%} of out-of-fold digits (a number is wrong when any "
        "part is rejected)"
    )
    rejection["number_false_accept_rate"] = accepted(both, number_threshold)
    cuts = np.concatenate([f["cuts"] for f in folds.values()])
    settle_labels = np.concatenate([f["labels"] for f in folds.values()])
    live = live_columns(cuts)
    live_threshold = threshold
    if live is not cuts:  # the live head's own threshold: the same keep rate, whole drawings
        whole = live[:, -1, 10]
        live_threshold = keep_threshold(whole[~np.isnan(whole)], DIGIT_KEEP)
        rejection["live_threshold"] = round(live_threshold, 6)
        rejection["live_rule"] = (
            "live updates (snapshots) are read by the live head, p[11:22], with live_threshold:"
            f" it keeps {DIGIT_KEEP:.1%} of the out-of-fold digits drawn whole"
        )

    per_contributor, probes = {}, {}
    for name, f in folds.items():
        ok = ~np.isnan(f["digits"][:, 0])
        p, labels = f["digits"][ok], f["labels"][ok]
        per_contributor[name] = {
            "n": int(len(labels)),
            "accuracy": round(float(verdict_right(p, labels, threshold).mean()), 5),
            "digit_accuracy": round(float((p[:, :10].argmax(axis=1) == labels).mean()), 5),
            "rejected": int((p[:, 10] >= threshold).sum()),
        }
        for probe, (q, label) in f["probes"].items():
            q = q[~np.isnan(q[:, 0])]
            right, n = probes.get(probe, (0, 0))
            probes[probe] = (right + int(verdict_right(q, label, threshold).sum()), n + len(q))
    n = sum(c["n"] for c in per_contributor.values())
    logs = {k: f["train_log"] for k, f in folds.items() if f["train_log"]}
    loco = {
        "note": FOLD_NOTE,
        "folds": sorted(folds),
        "fold_training": {
            k: {
                key: log.get(key)
                for key in ("epochs_run", "mnist_images_cap", "train_seconds", "train_images")
            }
            for k, log in logs.items()
        },
        "accuracy": round(sum(c["accuracy"] * c["n"] for c in per_contributor.values()) / n, 5),
        "digit_accuracy": round(
            sum(c["digit_accuracy"] * c["n"] for c in per_contributor.values()) / n, 5
        ),
        "per_contributor": per_contributor,
        "probes": {
            k: {"n": n_, "accuracy": round(r / max(n_, 1), 5)} for k, (r, n_) in probes.items()
        },
        "probe_note": (
            "styles of model/strokes.py applied to the held-out contributor's real digits "
            "(seed differs from training); real_7s is the anti-probe for continental 1s; "
            "accuracy = right digit and not rejected"
        ),
        "settle": settle_report(live, settle_labels, live_threshold),
    }
    return loco, rejection


def count_params(keras_path: Path) -> int | None:
    """Parameters of the trained Keras model (BN folded into convs in the .tflite)."""
    if not keras_path.exists():
        return None
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras  # dev-only: the served path never needs it

    return int(keras.saving.load_model(keras_path, compile=False).count_params())


def build_card(
    model_dir: Path, mnist_dir: str | None, unipen: str | None, nondigits: str | None
) -> dict:
    tflite = model_dir / "digits.tflite"
    classifier = Classifier.load(tflite, num_threads=1)
    train_log = json.loads((model_dir / "train_log.json").read_text())

    folds = fold_outputs(model_dir, unipen, nondigits)
    if folds is None:
        raise SystemExit(f"no fold models in {model_dir / 'folds'}: the threshold comes from them")
    loco, rejection = loco_card(folds, model_dir)
    threshold = rejection["threshold"]

    _, (x_test, y_test) = data.load_mnist(mnist_dir)
    images = x_test.astype(np.float32) / 255.0
    p = classifier.predict(images)
    predicted = p[:, :10].argmax(axis=1)
    mnist = accuracy_report(predicted, y_test)
    served_right = verdict_right(p, y_test, threshold)
    mnist["digit_accuracy"] = mnist["accuracy"]
    mnist["accuracy"] = round(float(served_right.mean()), 5)
    mnist["accuracy_note"] = (
        "'accuracy' is the served verdict (a 'not a digit' answer counts as an error); "
        "'digit_accuracy' and 'per_class' are the argmax over the ten digit columns"
    )
    mnist["rejected"] = int((p[:, 10] >= threshold).sum())
    mnist["errors"] = int((~served_right).sum())
    matrix = confusion_matrix(predicted, y_test)
    save_confusion_png(matrix, mnist["digit_accuracy"], model_dir / "confusion.png")
    mnist["confusion"] = matrix.tolist()

    # The served model on generated shapes it never saw (new seed, all four contributors'
    # letters cut into pieces are training data though, so pieces are left out here).
    shapes = strokes.generated_negatives(GENERATED_PER_FOLD, np.random.default_rng(EVAL_SEED))
    served_shapes = scores(classifier, [x for _, x in shapes])[:, 10]
    rejection["served_model_false_accept_generated"] = round(
        float((served_shapes < threshold).mean()), 5
    )
    rejection["served_model_mnist_keep_rate"] = round(float((p[:, 10] < threshold).mean()), 5)
    probe_checks = {}
    for name, drawing in (
        ("lone_dot", [np.array([[140.0, 140.0]])]),
        ("lone_horizontal_line", [np.array([[90.0, 140.0], [190.0, 141.0]])]),
        ("lone_vertical_line", [np.array([[140.0, 60.0], [141.0, 220.0]])]),
    ):
        q = scores(classifier, [drawing])[0]
        verdict = "not_a_digit" if q[10] >= threshold else str(int(q[:10].argmax()))
        probe_checks[name] = {"verdict": verdict, "p_not_a_digit": round(float(q[10]), 5)}
    rejection["served_model_simple_drawings"] = probe_checks

    samples = data.load_unipen(unipen)
    all_dev = scores(classifier, [s["strokes"] for s in samples])
    labels = np.array([s["label"] for s in samples])
    unipen_card = {
        "note": (
            "the served model trained on every UNIPEN dev writer, so 'all_dev_writers' is "
            "training data; the honest pen-stroke figures are in 'unipen_loco'"
        ),
        "all_dev_writers": {
            "n": int(len(labels)),
            "accuracy": round(float(verdict_right(all_dev, labels, threshold).mean()), 5),
        },
    }

    return {
        "name": MODEL_NAME,
        "version": classifier.info["version"],
        "model": {
            "file": tflite.name,
            "size_bytes": tflite.stat().st_size,
            "sha256": data.file_sha256(tflite),
            "params": count_params(model_dir / "digits.keras"),
            "input": "float32 [N, 28, 28, 1] in [0, 1], ink = 1 (MNIST polarity)",
            "output": (
                "float32 [N, 22]: two softmax heads of 11 (digits 0-9, then 'not a digit'); "
                "0-10 'final' (Predict, numbers), 11-21 'live' (snapshots while drawing)"
                if classifier.num_outputs == 2 * HEAD_WIDTH
                else f"float32 [N, {classifier.num_outputs}] softmax: digits 0-9"
                + (", then 10 = not a digit" if classifier.num_outputs > 10 else "")
            ),
            "precision": "float32",
        },
        "training": {
            key: train_log.get(key)
            for key in (
                "seed",
                "epochs_run",
                "train_seconds",
                "train_images",
                "class_counts",
                "validation_images",
                "validation_accuracy",
                "uses_unipen_training_writers",
                "data_sha256",
            )
        },
        "mnist_test": mnist,
        "rejection": rejection,
        "unipen_loco": loco,
        "unipen": unipen_card,
        "latency": {
            "interpreter": f"ai-edge-litert {version('ai-edge-litert')}, num_threads=1",
            "batch_1": latency(classifier, images, 1, LATENCY_RUNS[1]),
            "batch_64": latency(classifier, images, 64, LATENCY_RUNS[64]),
            "load_ms": load_time_ms(tflite),
            "machine": f"{platform.machine()}, {os.cpu_count()} cpus, {platform.processor()}",
        },
    }


def summary_rows(card: dict) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows shared by the console table and the README block."""
    mnist, loco, rej, lat = (
        card["mnist_test"],
        card["unipen_loco"],
        card["rejection"],
        card["latency"],
    )
    worst = min(mnist["per_class"].items(), key=lambda kv: kv[1])
    per = loco["per_contributor"]
    settle = loco["settle"]
    keep99 = rej["at_digit_keep"]["99.0%"]
    probes = loco["probes"]
    return [
        ("MNIST test, served verdict (reject = error)", f"{mnist['accuracy']:.2%}", ">= 99.50%"),
        ("MNIST test, argmax over digits", f"{mnist['digit_accuracy']:.2%}", ">= 99.60%"),
        ("MNIST worst class / rejected", f"{worst[0]}: {worst[1]:.2%} / {mnist['rejected']}", ""),
        (
            f"UNIPEN leave-one-contributor-out ({sum(c['n'] for c in per.values()):,} digits)",
            f"{loco['accuracy']:.2%}",
            ">= 98.5%",
        ),
        (
            "  per contributor",
            ", ".join(f"{k} {v['accuracy']:.1%}" for k, v in per.items()),
            "",
        ),
        (
            "  style probes",
            ", ".join(f"{k} {v['accuracy']:.1%}" for k, v in probes.items()),
            "",
        ),
        (
            "Live: median share of the drawing until the answer stays right",
            f"{settle['median_eighths']:g}/8",
            "<= 5/8",
        ),
        ("'not a digit' threshold (p[10] >=)", f"{rej['threshold']:.4g}", ""),
        (
            "  live head's threshold (p[21] >=)",
            f"{rej['live_threshold']:.4g}" if "live_threshold" in rej else "no live head",
            "",
        ),
        (
            "  a number's parts' threshold (p[10] >=)",
            f"{rej['number_threshold']:.4g}" if "number_threshold" in rej else "as above",
            "",
        ),
        (
            "  held-out digits kept / non-digits answered as digit",
            f"{rej['digit_keep_rate']:.2%} / {rej['false_accept_rate']:.2%}",
            ">= 98.5% / <= 10%",
        ),
        (
            "  false accepts: letters+symbols / generated shapes",
            f"{rej['false_accept_letters_symbols']:.2%} / {rej['false_accept_generated']:.2%}",
            "<= 10% / <= 2%",
        ),
        (
            "  false accepts at 99% / 99.5% digits kept",
            f"{keep99['false_accept_rate']:.2%} / "
            f"{rej['at_digit_keep']['99.5%']['false_accept_rate']:.2%}",
            "",
        ),
        ("  AUROC (digits vs all non-digits)", f"{rej['auroc_all']:.4f}", ""),
        ("Model size", f"{card['model']['size_bytes'] / 1024:.0f} KiB", "<= 2 MiB"),
        ("Parameters", f"{card['model']['params'] or 0:,}", ""),
        (
            "Batch-1 latency median / p95",
            f"{lat['batch_1']['median_ms']:.3f} / {lat['batch_1']['p95_ms']:.3f} ms",
            "median <= 0.3 ms",
        ),
        (
            "Batch-64 latency median / p95",
            f"{lat['batch_64']['median_ms']:.2f} / {lat['batch_64']['p95_ms']:.2f} ms",
            "",
        ),
        ("Model load (Classifier.load)", f"{lat['load_ms']:.1f} ms", "well under 1 s"),
        ("Training time (2 shared CPU cores)", f"{card['training']['train_seconds']:.0f} s", ""),
    ]


def target_checks(card: dict) -> dict[str, bool]:
    mnist, loco, rej = card["mnist_test"], card["unipen_loco"], card["rejection"]
    return {
        "mnist_digit_accuracy": mnist["digit_accuracy"] >= TARGETS["mnist_digit_accuracy"],
        "mnist_accuracy_rejects_as_errors": mnist["accuracy"]
        >= TARGETS["mnist_accuracy_rejects_as_errors"],
        "loco_accuracy": loco["accuracy"] >= TARGETS["loco_accuracy"],
        "false_accept_rate": rej["false_accept_rate"] <= TARGETS["false_accept_rate"],
        "settle_median_share": loco["settle"]["median_share"] <= TARGETS["settle_median_share"],
        "size_bytes": card["model"]["size_bytes"] <= TARGETS["size_bytes"],
        "batch1_median_ms": card["latency"]["batch_1"]["median_ms"] <= TARGETS["batch1_median_ms"],
    }


def print_report(card: dict) -> None:
    rows = summary_rows(card)
    width = max(len(name) for name, _, _ in rows)
    print(f"\n{card['name']} {card['version']}")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:>18}  {target}")
    print(
        "  per-class MNIST:",
        "  ".join(f"{k}:{v:.2%}" for k, v in card["mnist_test"]["per_class"].items()),
    )
    print("  generated false accepts:", card["rejection"]["false_accept_generated_by_kind"])
    print("  simple drawings:", card["rejection"]["served_model_simple_drawings"])
    checks = target_checks(card)
    print("  targets:", ", ".join(f"{k} {'PASS' if ok else 'FAIL'}" for k, ok in checks.items()))

    print("\n--- README block ---")
    print("| Figure | Value | Target |\n|---|---|---|")
    for name, value, target in rows:
        print(f"| {name} | {value} | {target} |")
    print(
        "\nMeasured by `python -m model.evaluate` on the served `model/digits.tflite` "
        f"(version `{card['version']}`); full figures in `model/card.json`, "
        "confusion matrix in `model/confusion.png`, rejection ROC in `model/rejection_roc.png`."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=str(data.ROOT / "model"))
    parser.add_argument("--data", help="MNIST IDX dir (default: $MNIST_DIR, ../shared/data/mnist)")
    parser.add_argument("--unipen", help="UNIPEN jsonl.gz (default: $UNIPEN_PATH or shared)")
    parser.add_argument("--nondigits", help="UNIPEN letters/symbols (default: beside --unipen)")
    args = parser.parse_args()

    model_dir = Path(args.model_dir)
    card = build_card(model_dir, args.data, args.unipen, args.nondigits)
    (model_dir / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    print_report(card)


if __name__ == "__main__":
    main()
