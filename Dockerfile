# Serving image for the live digit recognizer (a Hugging Face Docker Space listens on 7860).
# Only the serving requirements: the model is the committed .tflite, run by LiteRT.

# --- client assets: the Socket.IO browser client from the npm registry (no CDN at run time)
FROM node:20-slim AS client
WORKDIR /client
COPY client/package.json client/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# --- the app
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HOST=0.0.0.0 \
    PORT=7860
RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/digits
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY server/ server/
COPY model/__init__.py model/card.json model/digits.tflite model/
COPY client/ client/
COPY --from=client /client/node_modules/ client/node_modules/
USER app
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request, sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=2).status != 200)"
CMD ["python", "-m", "server"]
