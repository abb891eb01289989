# The web front end and the video workers (same image, other command; see docker-compose.yml):
#   docker build -t emotion-detector-web .          (the model server: serving/Dockerfile)
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOST=0.0.0.0 PORT=5000 \
    EMOTION_YUNET_PATH=/app/models/face_detection_yunet_2026may.onnx
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
# YuNet is optional (the Haar cascade is the fallback); FETCH_YUNET=0 builds without network access.
ARG FETCH_YUNET=1
RUN if [ "$FETCH_YUNET" = "1" ]; then python -m emotion_detector models download --dest /app/models; fi
RUN useradd --create-home --uid 10001 web && mkdir -p /app/instance && chown -R web /app
USER web
EXPOSE 5000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"]
