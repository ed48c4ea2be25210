#!/bin/sh
# The image's entrypoint: `chassis` with the container's arguments, except for the two other
# programs the image runs. Prefect's Kubernetes worker starts flow-run pods with
# `args: [prefect, flow-run, execute]` and keeps the image's entrypoint, so a bare `chassis`
# entrypoint would run `chassis prefect ...` and every flow run would fail.
set -e
case "${1:-}" in
    prefect | mlflow) exec "$@" ;;
    *) exec chassis "$@" ;;
esac
