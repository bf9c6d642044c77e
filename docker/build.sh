#!/usr/bin/env bash
# Build every aftercare image: the shared base (docker/base.Dockerfile), then one
# thin image per process from its own Dockerfile (its own package on top of the
# base). Every build's context is the repository root, filtered by .dockerignore.
#
#   docker/build.sh                                   # aftercare/<name>:0.1.0
#   REGISTRY=registry.example.com/aftercare TAG=0.2.0 PUSH=1 docker/build.sh
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${REGISTRY:-aftercare}
TAG=${TAG:-0.1.0}
PUSH=${PUSH:-0}
base="$REGISTRY/base:$TAG"

docker build --file docker/base.Dockerfile --tag "$base" .
images=("$base")
for dockerfile in services/*/Dockerfile gateway/Dockerfile; do
  dir=$(dirname "$dockerfile")
  image="$REGISTRY/$(basename "$dir"):$TAG"
  docker build --file "$dockerfile" --build-arg "BASE_IMAGE=$base" --tag "$image" .
  images+=("$image")
done
if [ "$PUSH" = 1 ]; then
  for image in "${images[@]}"; do docker push "$image"; done
fi
printf 'built %s\n' "${images[@]}"
