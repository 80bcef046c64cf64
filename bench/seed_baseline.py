"""The app we compare against: how a typical seed digit recognizer serves predictions.

One Flask route takes the canvas as a PNG data URL, squashes the WHOLE canvas to 28x28 (no
cropping or centring) and calls Keras `model.predict` once per request, served by Flask's
threaded development server. It exists only for bench/server_latency.py; tensorflow is fine
here because this is the thing being measured against, never part of the app.

    python bench/seed_baseline.py --port 7861 [--model model/digits.keras]
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
from pathlib import Path

import numpy as np
from flask import Flask, jsonify, request
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def load_model(path: Path):
    """digits.keras when it exists, else the same architecture untrained (same cost per call)."""
    import keras

    if path.is_file():
        return keras.saving.load_model(path), str(path)
    sys.path.insert(0, str(ROOT))
    from model.train import build_model

    return build_model(), "untrained model.train.build_model() (no digits.keras yet)"


def create_app(model_path: Path = ROOT / "model" / "digits.keras") -> Flask:
    model, name = load_model(model_path)
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz():
        return jsonify(model=name)

    @app.post("/predict")
    def predict():
        data_url = request.get_json()["image"]
        png = base64.b64decode(data_url.split(",", 1)[1])
        canvas = Image.open(io.BytesIO(png)).convert("RGBA").getchannel("A")  # ink
        x = np.asarray(canvas.resize((28, 28)), dtype=np.float32) / 255.0
        probabilities = model.predict(x[None, :, :, None], verbose=0)[0]
        return jsonify(digit=int(np.argmax(probabilities)), probabilities=probabilities.tolist())

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--model", type=Path, default=ROOT / "model" / "digits.keras")
    args = parser.parse_args()
    create_app(args.model).run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()
