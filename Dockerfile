# The web front end and the video workers (same image, other command; see docker-compose.yml):
#   docker build -t emotion-detector-web .          (the model server: serving/Dockerfile)
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST=0.0.0.0 PORT=5000 \
    EMOTION_MODEL_CACHE_DIR=/app/models EMOTION_INSTANCE_DIR=/app/instance
WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
COPY serving/requirements.txt serving/requirements.txt
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt
# The package itself (web app, workers, CLI, templates, static files, migrations, the model-server protocol),
# installed from a throwaway copy of the sources over the pinned dependencies above: what runs is what pip
# installed, as after `pip install .` anywhere.
COPY pyproject.toml README.md /src/
COPY emotion_detector/ /src/emotion_detector/
COPY serving/ /src/serving/
RUN pip install --no-cache-dir --no-deps /src && rm -rf /src
COPY gunicorn.conf.py ./
# The detectors' ONNX graphs made once, at build time, into the image's model cache: CenterFace (the default) and
# BlazeFace full range (its fallback).
RUN python -c "from emotion_detector.detection import DetectorOptions, create_detector; from pathlib import Path; \
[create_detector(DetectorOptions(kind=kind, cache_dir=Path('/app/models'))) for kind in ('centerface', 'blazeface_full_range')]" \
    && ls /app/models/*.onnx
RUN useradd --create-home --uid 10001 web && mkdir -p /app/instance && chown -R web /app
USER web
EXPOSE 5000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "emotion_detector.web.app:create_app()"]
