"""Train the digit CNN and export the served model.

    python -m model.train --data DIR --out model/

The network is sized for latency first: the server re-runs it on every throttled stroke
update, so it must answer a batch of 1 in ~0.1 ms on one core. Conv-BN-ReLU blocks at
16/32/64 channels with early pooling fit that budget (measured through LiteRT before
training); accuracy comes from augmentation that mimics how people draw on a canvas
(rotation, scale, shear, shift, stroke thickness) and from UNIPEN pen strokes rendered
by the same code that renders browser strokes.

Writes digits.keras, digits.tflite and train_log.json (history, wall time, data
hashes) into --out; model.evaluate turns these into the model card.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from model import data  # noqa: E402

SEED = 20260528
NUM_CLASSES = 10
INPUT_SHAPE = (28, 28, 1)
VALIDATION_SIZE = 5_000  # held out of the 60k MNIST training images
BATCH_SIZE = 128
EPOCHS = 30
PEAK_LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4
# Each training-writer UNIPEN digit is rendered this many times: once as written, then
# with the pen-space distortions below. Distorting the strokes (not the image) lets the
# server's renderer re-normalise them exactly as it does a live drawing.
UNIPEN_RENDERINGS = 6
PEN_WIDTH_RANGE = (2.0, 3.0)  # output pixels; the server draws at its default, people vary
STROKE_MAX_ROTATION_DEG = 12.0
STROKE_MAX_SHEAR = 0.3  # slant
STROKE_MAX_LOG_ASPECT = 0.15  # narrow / wide handwriting

# Augmentation ranges: what varies between people drawing on a 280x280 canvas after the
# server has centred and scaled their digit the MNIST way.
MAX_ROTATION_DEG = 15.0
SCALE_RANGE = (0.85, 1.15)
MAX_SHEAR = 0.25
MAX_SHIFT_PX = 2.5
THICKNESS_ODDS = (0.25, 0.5, 0.25)  # thinner / unchanged / thicker stroke


def build_model() -> keras.Model:
    """16→32→64 channels with pooling after the full-resolution layer.

    Every extra MAC at 28x28 costs latency for little accuracy; the 7x7 stage holds most
    capacity and a small dense head keeps the spatial layout that GAP would throw away.
    """

    def block(x, channels: int):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = keras.Input(INPUT_SHAPE)
    x = block(inputs, 16)
    x = layers.MaxPooling2D()(x)
    x = block(x, 32)
    x = block(x, 32)
    x = layers.MaxPooling2D()(x)
    x = block(x, 64)
    x = block(x, 64)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.4)(x)
    x = layers.Dense(64, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def random_affine(images: tf.Tensor) -> tf.Tensor:
    """One random rotation/scale/shear/shift per image, in a single resampling pass."""
    n = tf.shape(images)[0]
    angle = tf.random.uniform([n], -1.0, 1.0) * np.deg2rad(MAX_ROTATION_DEG)
    scale = tf.random.uniform([n], *SCALE_RANGE)
    shear = tf.random.uniform([n], -MAX_SHEAR, MAX_SHEAR)
    shift = tf.random.uniform([n, 2], -MAX_SHIFT_PX, MAX_SHIFT_PX)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # Output→input mapping about the image centre (ImageProjectiveTransform convention).
    a0, a1 = cos, -sin + shear * cos
    b0, b1 = sin, cos + shear * sin
    c = 13.5
    a2 = c - a0 * c - a1 * c - shift[:, 0]
    b2 = c - b0 * c - b1 * c - shift[:, 1]
    zeros = tf.zeros([n])
    transforms = tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images,
        transforms=transforms,
        output_shape=tf.constant(INPUT_SHAPE[:2]),
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )


def random_thickness(images: tf.Tensor) -> tf.Tensor:
    """Pens, mice and fingers differ in width: erode, keep or dilate each image."""
    thicker = tf.nn.max_pool2d(images, 2, 1, "SAME")
    thinner = -tf.nn.max_pool2d(-images, 2, 1, "SAME")
    u = tf.random.uniform([tf.shape(images)[0], 1, 1, 1])
    thin_odds, keep_odds, _ = THICKNESS_ODDS
    return tf.where(u < thin_odds, thinner, tf.where(u < thin_odds + keep_odds, images, thicker))


def augment(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return tf.clip_by_value(random_affine(random_thickness(images)), 0.0, 1.0), labels


def random_pen_transform(rng: np.random.Generator) -> np.ndarray:
    """A 2x2 slant/rotation/aspect change, as differs between writers."""
    angle = np.deg2rad(rng.uniform(-STROKE_MAX_ROTATION_DEG, STROKE_MAX_ROTATION_DEG))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shear = np.array([[1.0, rng.uniform(-STROKE_MAX_SHEAR, STROKE_MAX_SHEAR)], [0.0, 1.0]])
    aspect = np.diag([np.exp(rng.uniform(-STROKE_MAX_LOG_ASPECT, STROKE_MAX_LOG_ASPECT)), 1.0])
    return rotation @ shear @ aspect


def render_unipen(samples: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Pen strokes → model inputs through the server's own renderer (train = serve)."""
    from server.preprocess import render_strokes

    rng = np.random.default_rng(SEED)
    pairs = []
    for s in samples:
        pairs.append((render_strokes(s["strokes"]), s["label"]))
        for _ in range(UNIPEN_RENDERINGS - 1):
            matrix = random_pen_transform(rng)
            strokes = [stroke @ matrix.T for stroke in s["strokes"]]
            width = rng.uniform(*PEN_WIDTH_RANGE)
            pairs.append((render_strokes(strokes, pen_width=width), s["label"]))
    pairs = [(x, y) for x, y in pairs if x is not None]
    return np.stack([x for x, _ in pairs]), np.array([y for _, y in pairs], dtype=np.uint8)


def training_data(args) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """MNIST train minus a validation slice, plus rendered UNIPEN training writers."""
    (x, y), _ = data.load_mnist(args.data)
    order = np.random.default_rng(SEED).permutation(len(x))
    x, y = x[order].astype(np.float32) / 255.0, y[order]
    x_val, y_val = x[:VALIDATION_SIZE], y[:VALIDATION_SIZE]
    x_train, y_train = x[VALIDATION_SIZE:], y[VALIDATION_SIZE:]
    if not args.no_unipen:
        unipen_train, _ = data.unipen_split(data.load_unipen(args.unipen))
        x_pen, y_pen = render_unipen(unipen_train)
        print(f"UNIPEN: {len(x_pen)} renderings of {len(unipen_train)} training-writer digits")
        x_train = np.concatenate([x_train, x_pen])
        y_train = np.concatenate([y_train, y_pen])
    if args.limit:  # a random subset of the mix, for smoke runs
        keep = np.random.default_rng(SEED).permutation(len(x_train))[: args.limit]
        x_train, y_train = x_train[keep], y_train[keep]
    return (x_train[..., None], y_train), (x_val[..., None], y_val)


def export_tflite(model: keras.Model, path: Path) -> None:
    """Float32 export: int8 would save latency we do not need and cost accuracy we do."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    path.write_bytes(converter.convert())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="MNIST IDX dir (default: $MNIST_DIR, ../shared/data/mnist)")
    parser.add_argument("--unipen", help="UNIPEN jsonl.gz (default: $UNIPEN_PATH or shared)")
    parser.add_argument("--no-unipen", action="store_true", help="train on MNIST only")
    parser.add_argument("--out", default="model", help="output directory")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--limit", type=int, help="train on a random subset of this size")
    args = parser.parse_args()

    keras.utils.set_random_seed(SEED)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_val, y_val) = training_data(args)
    print(f"train {x_train.shape}, validation {x_val.shape}")

    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=SEED)
        .batch(BATCH_SIZE)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    # Warm-up, then cosine decay to zero over a fixed budget. No early stopping: annealing
    # to zero is what yields the final accuracy (validation accuracy keeps rising to the
    # last epoch, see train_log.json), so validation is reported, not used to pick weights.
    steps = args.epochs * int(np.ceil(len(x_train) / BATCH_SIZE))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=PEAK_LEARNING_RATE, warmup_steps=steps // 20
    )
    model = build_model()
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.summary()
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        epochs=args.epochs,
        validation_data=(x_val, y_val),
        verbose=2,
    )
    train_seconds = time.perf_counter() - start

    val_loss, val_acc = model.evaluate(x_val, y_val, verbose=0)
    print(f"validation accuracy {val_acc:.4%} (loss {val_loss:.4f}), {train_seconds:.0f} s")
    # A fresh uncompiled copy: without the optimizer's moments the file is ~3x smaller.
    inference_model = build_model()
    inference_model.set_weights(model.get_weights())
    inference_model.save(out / "digits.keras")
    export_tflite(inference_model, out / "digits.tflite")
    data_sha256 = data.mnist_sha256(args.data)
    if not args.no_unipen:
        unipen_file = data.unipen_path(args.unipen)
        data_sha256[unipen_file.name] = data.file_sha256(unipen_file)
    log = {
        "seed": SEED,
        "epochs_run": len(history.history["loss"]),
        "train_seconds": round(train_seconds, 1),
        "train_images": int(len(x_train)),
        "validation_images": int(len(x_val)),
        "validation_accuracy": round(float(val_acc), 5),
        "uses_unipen_training_writers": not args.no_unipen,
        "data_sha256": data_sha256,
        "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.history.items()},
    }
    (out / "train_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"wrote {out / 'digits.tflite'} ({(out / 'digits.tflite').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
