#!/bin/sh
# How a real build fits `prebuilds provision --exec`: two recipes, picked by PREBUILDS_BACKEND.
#
#     PREBUILDS_BACKEND=docker prebuilds provision --exec examples/docker-or-terraform.sh \
#         --concurrency 4 --job-timeout 15m --kill-grace 30s
#     PREBUILDS_BACKEND=terraform PREBUILDS_TERRAFORM_MODULE=/srv/templates/web \
#         prebuilds provision --exec examples/docker-or-terraform.sh --kill-grace 2m
#
# A sketch to copy from, not run by the tests (this machine has no Docker daemon and no
# Terraform; the tests only check that it parses). It needs `jq` to read parameters.
#
# What the provisioner gives every run: PREBUILDS_TRANSITION (start, stop or delete),
# PREBUILDS_WORKSPACE_ID, PREBUILDS_WORKSPACE_NAME, PREBUILDS_OWNER, PREBUILDS_ORGANIZATION,
# PREBUILDS_TEMPLATE, PREBUILDS_VERSION, PREBUILDS_PRESET, PREBUILDS_BUILD_NUMBER,
# PREBUILDS_JOB_ID, PREBUILDS_PARAMETERS (compact JSON) and the whole job as JSON on stdin.
# Exit 0: the job succeeded (a start's agent is reported ready, since this script prints no
# PREBUILDS_AGENT= line). Anything else: it failed, with the end of stderr as its error.
# On --job-timeout or a forced stop the whole process group gets SIGTERM, then SIGKILL after
# --kill-grace: give Terraform time to release its state lock (its first interrupt is graceful).
set -eu

job=$(cat)
param() {
    printf '%s' "$job" | jq -r --arg key "$1" '.parameters[$key] // empty'
}
name="prebuilds-$PREBUILDS_WORKSPACE_ID"

case ${PREBUILDS_BACKEND:-docker} in
docker)
    case $PREBUILDS_TRANSITION in
    start)
        if docker container inspect "$name" >/dev/null 2>&1; then
            docker start "$name" # a stopped workspace, or a claim of a running prebuild
        else
            image=$(param image)
            cpus=$(param cpu)
            docker run --detach --name "$name" \
                --label "prebuilds.workspace-id=$PREBUILDS_WORKSPACE_ID" \
                --label "prebuilds.template=$PREBUILDS_TEMPLATE@$PREBUILDS_VERSION" \
                --label "prebuilds.preset=$PREBUILDS_PRESET" \
                ${cpus:+--cpus "$cpus"} \
                "${image:-debian:12}" sleep infinity
        fi
        # Ready when the container runs; a real agent would say so itself (see
        # local-workspace.sh: PREBUILDS_AGENT=ready).
        test "$(docker container inspect --format '{{.State.Running}}' "$name")" = true
        ;;
    stop) docker stop "$name" ;;
    delete) docker rm --force "$name" ;;
    *) echo "unknown transition $PREBUILDS_TRANSITION" >&2 && exit 2 ;;
    esac
    ;;
terraform)
    module=${PREBUILDS_TERRAFORM_MODULE:?set PREBUILDS_TERRAFORM_MODULE to the template module}
    # One working directory (and state) per workspace; a remote backend works the same way.
    dir=${PREBUILDS_TERRAFORM_ROOT:-/var/lib/prebuilds/terraform}/$PREBUILDS_WORKSPACE_ID
    if [ ! -d "$dir/.terraform" ]; then
        mkdir -p "$dir"
        terraform -chdir="$dir" init -input=false -from-module="$module"
    fi
    # The preset's parameters become the module's variables, with the workspace's identity and
    # the transition (as in Coder's templates: a stopped workspace keeps its disk, not its VM).
    printf '%s' "$job" | jq '.parameters + {
        workspace_id: .workspace_id, workspace_name: .workspace_name, owner: .owner,
        transition: .transition
    }' >"$dir/prebuilds.auto.tfvars.json"
    case $PREBUILDS_TRANSITION in
    start | stop) terraform -chdir="$dir" apply -input=false -auto-approve ;;
    delete) terraform -chdir="$dir" destroy -input=false -auto-approve && rm -rf "$dir" ;;
    *) echo "unknown transition $PREBUILDS_TRANSITION" >&2 && exit 2 ;;
    esac
    ;;
*)
    echo "PREBUILDS_BACKEND must be docker or terraform" >&2
    exit 2
    ;;
esac
