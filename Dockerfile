# The web front end and the video workers (same image, other command; see docker-compose.yml):
#   docker build -t emotion-detector-web .          (the model server: serving/Dockerfile)
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST=0.0.0.0 PORT=5000 \
    EMOTION_MODEL_CACHE_DIR=/app/models
WORKDIR /app
COPY requirements.txt requirements-nodeps.txt ./
COPY serving/requirements.txt serving/requirements.txt
RUN pip install --no-cache-dir -r requirements.txt && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt
# The web app speaks to the model server with the TF Serving protos in serving/protos (not its models).
COPY serving/__init__.py serving/errors.py serving/tensors.py serving/
COPY serving/protos/ serving/protos/
COPY emotion_detector/ emotion_detector/
COPY templates/ templates/
COPY static/ static/
COPY app.py gunicorn.conf.py alembic.ini ./
COPY migrations/ migrations/
# BlazeFace (the default detector) translated to ONNX once, at build time, into the image's model cache.
RUN python -c "from emotion_detector.detection import DetectorOptions, create_detector; \
from pathlib import Path; create_detector(DetectorOptions(kind='blazeface', cache_dir=Path('/app/models')))" && ls /app/models/*.onnx
RUN useradd --create-home --uid 10001 web && mkdir -p /app/instance && chown -R web /app
USER web
EXPOSE 5000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"]
