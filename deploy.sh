#!/usr/bin/env bash
# Deploys the model server and the web app to Google Cloud Run.
#
#   GCP_PROJECT=my-project GCP_REGION=europe-west1 EMOTION_SECRET_KEY=... ./deploy.sh
#
# EMOTION_SECRET_KEY: at least 32 characters (e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`).
# EMOTION_DATABASE_URL / EMOTION_BROKER_URL: a PostgreSQL database and a Redis queue (e.g. Cloud SQL and
# Memorystore). Without them the web service keeps jobs and results in SQLite and its embedded queue inside the
# container, which production refuses unless allowed: the script allows it then, and says so, because those
# results are lost whenever Cloud Run replaces the instance.
# Optional: GCP_ARTIFACT_REPO (default emotion-detector), IMAGE_TAG (default: the git commit),
# MODEL_SERVICE / WEB_SERVICE (Cloud Run service names). Needs gcloud (logged in) and docker.
# The model server only accepts traffic from inside the project's VPC (--ingress internal); the web
# service reaches it through Direct VPC egress, over TLS on :443, speaking gRPC (HTTP/2 end to end).
set -euo pipefail

: "${GCP_PROJECT:?set GCP_PROJECT to the Google Cloud project id}"
: "${EMOTION_SECRET_KEY:?set EMOTION_SECRET_KEY to a secret value}"
if (( ${#EMOTION_SECRET_KEY} < 32 )); then
  echo "EMOTION_SECRET_KEY must be at least 32 characters" >&2
  exit 2
fi
# "##" separates the variables (gcloud's ^##^ escape), so values may hold commas
app_env="WEB_CONCURRENCY=2##EMOTION_ENVIRONMENT=production##EMOTION_SECRET_KEY=${EMOTION_SECRET_KEY}"
if [[ -n "${EMOTION_DATABASE_URL:-}" && -n "${EMOTION_BROKER_URL:-}" ]]; then
  app_env+="##EMOTION_DATABASE_URL=${EMOTION_DATABASE_URL}##EMOTION_BROKER_URL=${EMOTION_BROKER_URL}"
else
  echo "no EMOTION_DATABASE_URL/EMOTION_BROKER_URL: video jobs live in the container's SQLite and are lost when it is replaced" >&2
  app_env+="##EMOTION_ALLOW_INSECURE=sqlite,embedded_queue"
fi
region="${GCP_REGION:-europe-west1}"
repository="${GCP_ARTIFACT_REPO:-emotion-detector}"
tag="${IMAGE_TAG:-$(git rev-parse --short HEAD)}"
model_service="${MODEL_SERVICE:-emotion-detector-model}"
web_service="${WEB_SERVICE:-emotion-detector-web}"
registry="${region}-docker.pkg.dev/${GCP_PROJECT}/${repository}"
model_image="${registry}/model:${tag}"
web_image="${registry}/web:${tag}"

cd "$(dirname "$0")"

gcloud artifacts repositories describe "$repository" --project "$GCP_PROJECT" --location "$region" >/dev/null 2>&1 \
  || gcloud artifacts repositories create "$repository" --project "$GCP_PROJECT" --location "$region" --repository-format docker
gcloud auth configure-docker "${region}-docker.pkg.dev" --quiet

docker build -f serving/Dockerfile -t "$model_image" .
docker build -f Dockerfile -t "$web_image" .
docker push "$model_image"
docker push "$web_image"

gcloud run deploy "$model_service" --project "$GCP_PROJECT" --region "$region" --image "$model_image" \
  --port 8500 --use-http2 --ingress internal --allow-unauthenticated \
  --cpu 2 --memory 2Gi --concurrency 32 \
  --args="--port=8500,--rest_api_port=0"  # serves the shipped models, where pip installed them in the image

model_url="$(gcloud run services describe "$model_service" --project "$GCP_PROJECT" --region "$region" --format 'value(status.url)')"
model_host="${model_url#https://}"

gcloud run deploy "$web_service" --project "$GCP_PROJECT" --region "$region" --image "$web_image" \
  --port 5000 --allow-unauthenticated --session-affinity --timeout 3600 \
  --cpu 2 --memory 1Gi --concurrency 80 \
  --network default --subnet default --vpc-egress all-traffic \
  --set-env-vars "^##^${app_env}##EMOTION_MODEL_SERVER=${model_host}:443##EMOTION_MODEL_SERVER_TLS=true"

echo "web: $(gcloud run services describe "$web_service" --project "$GCP_PROJECT" --region "$region" --format 'value(status.url)')"
