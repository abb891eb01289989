# The web front end, the video workers and the forwarder (same image, other command; see docker-compose.yml):
#   docker build -t emotion-detector-web .          (the model server: serving/Dockerfile)
# Two stages: the first installs into a virtual environment and makes the detectors' graphs; the second copies
# only those onto a clean base, so pip, its caches and the build's leftovers never reach the image.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
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
# The detectors' ONNX graphs made once, here, into the image's model cache: CenterFace (the default) and
# BlazeFace full range (its fallback).
RUN python -c "from emotion_detector.detection import DetectorOptions, create_detector; from pathlib import Path; \
[create_detector(DetectorOptions(kind=kind, cache_dir=Path('/opt/models'))) for kind in ('centerface', 'blazeface_full_range')]" \
    && ls /opt/models/*.onnx
# Nothing at run time installs packages or reads bytecode written here.
RUN pip uninstall -y -q pip setuptools && find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/opt/venv/bin:$PATH HOST=0.0.0.0 PORT=5000 \
    EMOTION_MODEL_CACHE_DIR=/app/models EMOTION_INSTANCE_DIR=/app/instance
WORKDIR /app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/models /app/models
COPY gunicorn.conf.py ./
RUN useradd --create-home --uid 10001 web && mkdir -p /app/instance && chown -R web /app/instance
USER 10001
EXPOSE 5000
# The public health answer (status only): 503 while the models, database or queue are down.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/api/v1/health', timeout=4)"]
CMD ["gunicorn", "-c", "gunicorn.conf.py", "emotion_detector.web.app:create_app()"]
