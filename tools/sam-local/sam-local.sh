#!/usr/bin/env bash
# `make sam-local`: run the traffic hooks with `sam local invoke`, in a container, with no registry and no AWS.
#
#  1. installs what is missing (Debian: docker.io, and debootstrap when the image must be built);
#  2. starts dockerd in the background if no Docker daemon answers, and stops that dockerd (by PID) on exit;
#  3. builds once a local stand-in for public.ecr.aws/lambda/python:3.13-<arch> (Debian trixie, python3.13,
#     awslambdaric, boto3) - the public image cannot be pulled here;
#  4. `sam build`s the two hooks from a copy of template.yaml with the host's architecture (tools/sam-local/build);
#  5. `sam local invoke --skip-pull-image`s PreTrafficFunction and PostTrafficFunction with the sample events;
#  6. checks that the hook's own code ran in the container and stopped at its first AWS call (check_invoke.py).
#
# Environment: SAM (sam binary), RUNTIME_PATH (dir with python3.13 for sam build), SAM_LOCAL_BUILD_DIR,
# SAM_LOCAL_ENDPOINT_URL (default http://127.0.0.1:1), SAM_LOCAL_REBUILD_IMAGE=1 (rebuild the stand-in),
# SAM_LOCAL_MIRROR (Debian mirror; default: the machine's apt sources), SAM_LOCAL_SUITE (default trixie),
# SAM_LOCAL_DOCKERD_ARGS (default --iptables=false --ip-forward=false).
# Needs root (re-runs itself under sudo otherwise). Details: tools/sam-local/README.md.
set -Eeuo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${SAM_LOCAL_BUILD_DIR:-$HERE/build}
SAM=${SAM:-$ROOT/.venv-sam/bin/sam}
ENDPOINT_URL=${SAM_LOCAL_ENDPOINT_URL:-http://127.0.0.1:1}
SUITE=${SAM_LOCAL_SUITE:-trixie}
REGION=eu-central-1

log() { printf '[sam-local] %s\n' "$*" >&2; }
die() { printf '[sam-local] FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
TIMINGS=()
timing() { TIMINGS+=("$(printf '%-40s %6s s' "$1" "$2")"); log "$1: $2 s"; }

# Root for apt-get, dockerd, debootstrap, chroot and the Docker socket: re-run the whole script under sudo if needed.
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "needs root (apt-get, dockerd, debootstrap, chroot, Docker) and there is no sudo"
  log "not root: re-running under sudo"
  exec sudo --preserve-env env "PATH=$PATH" "$0" "$@"
fi
[ -x "$SAM" ] || die "no SAM CLI at $SAM (run: make .venv-sam/.installed)"
SAM=$(cd "$(dirname "$SAM")" && pwd)/$(basename "$SAM")
SAM_PYTHON=$(dirname "$SAM")/python

mkdir -p "$BUILD"
exec 9>"$BUILD/.lock"
flock -n 9 || die "another 'make sam-local' holds $BUILD/.lock"

# --- cleanup: only what this run started ---------------------------------------------------------------------
DOCKERD_PID=""
CHROOT_MOUNTS=()
cleanup() {
  local rc=$?
  for m in "${CHROOT_MOUNTS[@]}"; do umount "$m" 2>/dev/null || true; done
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    log "stopping the dockerd this run started (PID $DOCKERD_PID)"
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 1; done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      log "dockerd (PID $DOCKERD_PID) still running after 30 s: SIGKILL"
      kill -KILL "$DOCKERD_PID" 2>/dev/null || true
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. prerequisites -----------------------------------------------------------------------------------------
apt_install() {
  log "installing missing Debian package(s): $* (apt-get install -y --no-install-recommends $*)"
  if ! env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"; then
    log "apt-get install failed: running apt-get update, then trying once more"
    apt-get update
    env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
  fi
}

case "$(uname -m)" in
  x86_64 | amd64) ARCH=x86_64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) die "unsupported host architecture $(uname -m) (Lambda has x86_64 and arm64)" ;;
esac
IMAGE=public.ecr.aws/lambda/python:3.13-$ARCH

docker_answers() { timeout 15 docker info >/dev/null 2>&1; }

if ! docker_answers && ! command -v dockerd >/dev/null; then
  apt_install docker.io
fi
command -v docker >/dev/null || die "no docker client on PATH"

# --- 2. a Docker daemon ---------------------------------------------------------------------------------------
DOCKERD_LOG=$BUILD/dockerd.log
: >"$DOCKERD_LOG"
start_dockerd() {
  log "starting dockerd in the background: dockerd $* (log: $DOCKERD_LOG)"
  dockerd "$@" >>"$DOCKERD_LOG" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do
    if docker_answers; then
      log "dockerd is up (PID $DOCKERD_PID): $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
      return 0
    fi
    kill -0 "$DOCKERD_PID" 2>/dev/null || break
    sleep 1
  done
  log "dockerd $* did not come up; last lines of its log:"
  tail -n 15 "$DOCKERD_LOG" | sed 's/^/    /' >&2
  if kill -0 "$DOCKERD_PID" 2>/dev/null; then kill -TERM "$DOCKERD_PID" || true; wait "$DOCKERD_PID" || true; fi
  DOCKERD_PID=""
  return 1
}

# Our dockerd leaves the host's firewall and forwarding alone (--iptables=false --ip-forward=false): SAM reaches
# the container through docker-proxy on 127.0.0.1, and containers get no outbound NAT - nothing leaves the machine.
# If it will not start, once more with the vfs storage driver (no overlayfs, e.g. nested in an overlay root).
read -r -a DOCKERD_ARGS <<<"${SAM_LOCAL_DOCKERD_ARGS:---iptables=false --ip-forward=false}"
if docker_answers; then
  log "a Docker daemon answers already: using it, and leaving it running"
else
  start_dockerd "${DOCKERD_ARGS[@]}" || start_dockerd "${DOCKERD_ARGS[@]}" --storage-driver=vfs ||
    die "dockerd would not start (log: $DOCKERD_LOG; see tools/sam-local/README.md, 'When dockerd will not start')"
fi

# --- 3. the stand-in for the Lambda base image ----------------------------------------------------------------
debian_mirror() {
  # The first Debian archive (not the security archive) in the machine's apt sources, one-line or deb822 format.
  local files=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  [ ${#files[@]} -gt 0 ] || return 0
  awk '
    /^[[:space:]]*#/ { next }
    /^deb[[:space:]]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { if ($i ~ /\/debian\/?$/) { print $i; exit } break } }
    /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }
  ' "${files[@]}"
}

build_image() {
  command -v debootstrap >/dev/null || apt_install debootstrap
  local mirror=${SAM_LOCAL_MIRROR:-$(debian_mirror)}
  [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources.list(.d); set SAM_LOCAL_MIRROR"
  local rootfs=$BUILD/rootfs-$ARCH t0 t
  t0=$(now)
  if [ -e "$rootfs" ]; then log "removing a leftover $rootfs"; rm -rf "$rootfs"; fi
  log "debootstrap --variant=minbase --include=python3.13,python3-pip,ca-certificates $SUITE $rootfs $mirror"
  t=$(now)
  debootstrap --variant=minbase --include=python3.13,python3-pip,ca-certificates \
    "$SUITE" "$rootfs" "$mirror" >"$BUILD/debootstrap.log" 2>&1 ||
    { tail -n 20 "$BUILD/debootstrap.log" >&2; die "debootstrap failed (log: $BUILD/debootstrap.log)"; }
  timing "image: debootstrap $SUITE" "$(since "$t")"

  # pip in the chroot: the host's DNS and CA bundle (the network here may re-sign TLS), removed afterwards.
  local ca=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  cp "$ca" "$rootfs/tmp/host-ca.pem"
  mount -t proc proc "$rootfs/proc" && CHROOT_MOUNTS+=("$rootfs/proc")
  log "chroot: python3.13 -m pip install --target /var/runtime awslambdaric boto3"
  t=$(now)
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
    PIP_CERT=/tmp/host-ca.pem PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    ${PIP_INDEX_URL:+PIP_INDEX_URL=$PIP_INDEX_URL} \
    python3.13 -m pip install --quiet --root-user-action=ignore --target /var/runtime awslambdaric boto3 ||
    die "pip install in the chroot failed"
  timing "image: pip install awslambdaric boto3" "$(since "$t")"
  umount "$rootfs/proc" && CHROOT_MOUNTS=()

  install -m 0755 "$HERE/bootstrap" "$rootfs/var/runtime/bootstrap"
  mkdir -p "$rootfs/var/task" "$rootfs/var/lang/bin" "$rootfs/opt"
  ln -sf /usr/bin/python3.13 "$rootfs/var/lang/bin/python3.13"
  ln -sf python3.13 "$rootfs/var/lang/bin/python3"
  ln -sf python3.13 "$rootfs/var/lang/bin/python"
  rm -rf "$rootfs/tmp/host-ca.pem" "$rootfs/var/cache/apt/"*.bin "$rootfs/var/lib/apt/lists/"* \
    "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/info"
  : | tee "$rootfs/etc/resolv.conf" >/dev/null

  local versions
  versions=$(chroot "$rootfs" /var/lang/bin/python3.13 - <<'PY'
import sys
sys.path.insert(0, "/var/runtime")
from importlib.metadata import version
print(f"python {sys.version.split()[0]}, awslambdaric {version('awslambdaric')}, boto3 {version('boto3')}")
PY
  )
  log "stand-in contents: $versions"
  log "docker import -> $IMAGE"
  t=$(now)
  tar --numeric-owner -C "$rootfs" -c . | docker import \
    -c 'ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin' \
    -c 'ENV LAMBDA_TASK_ROOT=/var/task' -c 'ENV LAMBDA_RUNTIME_DIR=/var/runtime' -c 'ENV LANG=C.UTF-8' \
    -c "LABEL org.release-train.sam-local.stand-in=\"debian $SUITE minbase; $versions\"" \
    -c 'WORKDIR /var/task' -c 'ENTRYPOINT ["/var/runtime/bootstrap"]' \
    -m "release-train tools/sam-local stand-in for $IMAGE" - "$IMAGE" >/dev/null ||
    die "docker import failed"
  timing "image: docker import" "$(since "$t")"
  rm -rf "$rootfs"
  timing "image build (total)" "$(since "$t0")"
}

if [ "${SAM_LOCAL_REBUILD_IMAGE:-0}" = 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "SAM_LOCAL_REBUILD_IMAGE=1: removing $IMAGE"
  docker image rm "$IMAGE" >/dev/null
fi
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "image $IMAGE exists: not rebuilding it ($(docker image inspect --format \
    '{{index .Config.Labels "org.release-train.sam-local.stand-in"}}' "$IMAGE"))"
else
  build_image
fi
log "smoke test of the image: $(docker run --rm --entrypoint /var/lang/bin/python3.13 "$IMAGE" -c \
  'import sys; sys.path.append("/var/runtime"); import awslambdaric, boto3; print("python", sys.version.split()[0], "awslambdaric + boto3 import")')"

# --- 4. sam build of the two hooks, from a copy of the template with the host's architecture ------------------
# sam build needs the runtime's Python (python3.13) on PATH: RUNTIME_PATH (from the Makefile), else pyenv's 3.13.0.
RUNTIME_PATH=${RUNTIME_PATH:-}
if [ -z "$RUNTIME_PATH" ]; then
  d="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")/versions/3.13.0/bin"
  [ -x "$d/python3.13" ] && RUNTIME_PATH="$d:"
fi
PATH="$RUNTIME_PATH$PATH" python3.13 -c 'import sys' 2>/dev/null ||
  die "sam build needs a working python3.13 on PATH (set RUNTIME_PATH=/dir/with/python3.13:)"

LOCAL_TEMPLATE=$BUILD/template.yaml
"$SAM_PYTHON" "$HERE/local_template.py" "$ROOT/template.yaml" "$LOCAL_TEMPLATE" --arch "$ARCH" \
  --endpoint-url "$ENDPOINT_URL" | sed 's/^/[sam-local] /' >&2

# SAM runs from its own work dir: the project's .aws-sam is untouched and the project's samconfig.toml (deploy
# settings) is not read. `sam build` takes one resource (and the layers it uses) at a time and empties its build
# dir first, so each hook gets its own build dir. (--cached does not help here: SAM keeps no build.toml for a
# single-resource build, so every run would rebuild the layer anyway and leave one more .aws-sam/deps folder.)
HOOKS=(PreTrafficFunction PostTrafficFunction)
SAM_WORK=$BUILD/sam
mkdir -p "$SAM_WORK"
cd "$SAM_WORK"
export SAM_CLI_TELEMETRY=0
for fn in "${HOOKS[@]}"; do
  log "sam build $fn --template-file $LOCAL_TEMPLATE --base-dir $ROOT --build-dir $SAM_WORK/$fn"
  t=$(now)
  PATH="$RUNTIME_PATH$PATH" "$SAM" build "$fn" --template-file "$LOCAL_TEMPLATE" --base-dir "$ROOT" \
    --build-dir "$SAM_WORK/$fn" >"$BUILD/sam-build-$fn.log" 2>&1 ||
    { cat "$BUILD/sam-build-$fn.log" >&2; die "sam build $fn failed"; }
  grep -E '^(Building|Build Succeeded)' "$BUILD/sam-build-$fn.log" | sed 's/^/    /' >&2 || true
  timing "sam build $fn" "$(since "$t")"
done

# --- 5. sam local invoke, 6. check what ran -------------------------------------------------------------------
# Fake credentials and a region: the hook must fail at the network (AWS_ENDPOINT_URL above), not at credentials.
# SAM passes these to the container as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_REGION.
export AWS_ACCESS_KEY_ID=AKIASAMLOCALFAKE0000 AWS_SECRET_ACCESS_KEY=sam-local-fake-secret
export AWS_REGION=$REGION AWS_DEFAULT_REGION=$REGION
unset AWS_SESSION_TOKEN AWS_PROFILE
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

declare -A EVENTS=([PreTrafficFunction]=events/pre_traffic/lambda_deployment.json
  [PostTrafficFunction]=events/post_traffic/lambda_deployment.json)
# SAM rebuilds its invoke image (samcli/lambda-python:3.13-<arch>-<layers hash>: the stand-in + its emulator + the
# layer) on every invoke of a function with a local layer; the image it replaces is left untagged. Those are removed.
SAM_IMAGES=()
note_sam_images() { mapfile -t -O "${#SAM_IMAGES[@]}" SAM_IMAGES < <(docker image ls -q --no-trunc samcli/lambda-python); }
note_sam_images
FAILED=()
for fn in "${HOOKS[@]}"; do
  event=$ROOT/${EVENTS[$fn]}
  out=$BUILD/invoke-$fn.stdout err=$BUILD/invoke-$fn.stderr
  log "sam local invoke --skip-pull-image $fn -e ${EVENTS[$fn]} (AWS_ENDPOINT_URL=$ENDPOINT_URL in the container)"
  t=$(now)
  rc=0
  timeout 900 "$SAM" local invoke "$fn" --skip-pull-image --template-file "$SAM_WORK/$fn/template.yaml" -e "$event" \
    --region "$REGION" ${SAM_LOCAL_DOCKER_NETWORK:+--docker-network "$SAM_LOCAL_DOCKER_NETWORK"} \
    >"$out" 2>"$err" || rc=$?
  timing "sam local invoke $fn" "$(since "$t")"
  log "sam exit code $rc; output in $out (response) and $err (SAM and container logs)"
  if ! "$SAM_PYTHON" "$HERE/check_invoke.py" --function "$fn" --event "$event" --endpoint-url "$ENDPOINT_URL" \
    --sam-exit-code "$rc" \
    --stdout "$out" --stderr "$err"; then
    FAILED+=("$fn")
  fi
  note_sam_images
done
for id in $(printf '%s\n' "${SAM_IMAGES[@]}" | sort -u); do
  if [ "$(docker image inspect --format '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ]; then
    docker image rm "$id" >/dev/null 2>&1 && log "removed SAM's superseded (untagged) invoke image ${id:7:12}" || true
  fi
done

log "timings:"
printf '    %s\n' "${TIMINGS[@]}" >&2
[ ${#FAILED[@]} -eq 0 ] || die "the hook did not run as expected in the container: ${FAILED[*]} (see above)"
log "OK: both hooks ran in the container ($IMAGE) and stopped at their first AWS call"
