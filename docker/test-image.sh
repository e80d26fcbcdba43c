#!/usr/bin/env bash
# Build the bidsfusion image from this checkout with podman, then use it as a BIDS App
# user would: --version, plugins, synth, the participant level (and its rerun, which
# skips), a one-epoch group run, and the one-line refusals of a folder uid 1000 cannot
# write. Every run has --network none, BIDS_DIR read only and the image's uid 1000;
# the script checks exit codes, outputs and their owner.
#
#   docker/test-image.sh [WORK]   # WORK: a new or empty folder, kept with its logs
#                                 # (default: a temporary one, removed at the end)
#
# .ci/run runs it after the tests. It needs podman, buildah, mmdebstrap and runc, and
# installs them with apt-get when it is root (or has password-less sudo). It prints
# "image test skipped: REASON" and exits 0 only where they cannot be installed or
# podman cannot start a container here; any later failure exits non-zero.
#
# No registry is used: the base image is bootstrapped from the Debian mirror with
# mmdebstrap (python3 and venv from bookworm) and passed as PYTHON_IMAGE; torch and
# the other wheels come from this machine's pip sources (TORCH_VARIANT=pypi): its
# PIP_* variables as build arguments, and its pip.conf files, CA bundle and local
# wheel folders mounted read only into the build. runc replaces crun (which refuses
# some cgroup setups) and the containers' rlimits are this shell's hard limits, processes
# capped at 32768 (podman's defaults, and here any higher process limit, are refused).
# BIDSFUSION_IMAGE_KEEP=1 keeps the images (and the build cache) for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "image test skipped: $*" >&2
  exit 0
}
fail() {
  echo "image test failed: $*" >&2
  exit 1
}

tools=(podman buildah mmdebstrap runc)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_get=()
  if [ "$(id -u)" -eq 0 ]; then
    apt_get=(apt-get)
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    apt_get=(sudo -n apt-get)
  fi
  if [ "${#apt_get[@]}" -eq 0 ] || ! command -v apt-get >/dev/null; then
    skip "${missing[*]} missing and no apt-get as root to install them"
  fi
  { "${apt_get[@]}" update -q && DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -q "${tools[@]}"; } \
    >/dev/null || skip "apt-get could not install ${tools[*]}"
fi

version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' bidsfusion/__init__.py)
[ -n "$version" ] || fail "no __version__ in bidsfusion/__init__.py"
base=localhost/bidsfusion-test-base:bookworm
image=localhost/bidsfusion/bidsfusion:$version-test
if [ -n "${1:-}" ]; then
  work=$1
  if [ -e "$work" ] && [ -n "$(ls -A "$work")" ]; then fail "$work is not empty: give a new or empty folder"; fi
  mkdir -p "$work"
  scratch=
else
  work=$(mktemp -d)
  scratch=$work
fi
cleanup() {
  if [ -n "$scratch" ]; then rm -rf "$scratch"; fi
  if [ "${BIDSFUSION_IMAGE_KEEP:-0}" != 1 ]; then
    podman rmi -f "$image" "$base" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
nproc=$(ulimit -Hu)
if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit "nproc=$nproc:$nproc")
engine=(podman --runtime runc)

seconds() { echo $(($(date +%s) - $1)); }

start=$(date +%s)
if ! podman image exists "$base"; then
  mmdebstrap --quiet --variant=apt \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$work/rootfs.tar" || skip "mmdebstrap could not bootstrap Debian bookworm"
  podman import --quiet "$work/rootfs.tar" "$base" >/dev/null
  rm -f "$work/rootfs.tar"
fi
"${engine[@]}" run --rm --network none "${limits[@]}" "$base" true 2>"$work/probe.err" ||
  skip "podman cannot start a container here: $(tail -n 1 "$work/probe.err")"
echo "base image $base: $(seconds "$start") s"

# pip's sources on this machine, for the build: PIP_* variables the Dockerfile declares,
# and every pip.conf, CA bundle and local folder they name, mounted read only.
build_args=(--build-arg "PYTHON_IMAGE=$base" --build-arg TORCH_VARIANT=pypi --build-arg "VERSION=$version")
for name in PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_TRUSTED_HOST; do
  if [ -n "${!name:-}" ]; then build_args+=(--build-arg "$name=${!name}"); fi
done
mounts=()
mount_ro() { if [ -e "$1" ]; then mounts+=(--volume "$1:$2:ro"); fi; }
mount_ro /etc/pip.conf /etc/pip.conf
mount_ro /etc/xdg/pip /etc/xdg/pip
mount_ro "$HOME/.config/pip/pip.conf" /root/.config/pip/pip.conf
mount_ro "$HOME/.pip/pip.conf" /root/.pip/pip.conf
sources="${PIP_CERT:-} ${PIP_FIND_LINKS:-} ${PIP_INDEX_URL:-} ${PIP_EXTRA_INDEX_URL:-}"
sources+=" $(python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.\(cert\|find-links\|index-url\|extra-index-url\|constraint\)='\(.*\)'$/\2/p" | tr '\n' ' ')"
for source in $sources; do
  path=${source#file://}
  case "$path" in /*) ;; *) continue ;; esac
  # a file:// index's pages (.../simple) may link to files beside it: mount its parent
  if [ "$path" != "$source" ]; then path=$(dirname "${path%/}"); fi
  if [ -f "$path" ]; then path=$(dirname "$path"); fi
  if [ -d "$path" ] && [ "$path" != / ]; then mount_ro "$path" "$path"; fi
done

start=$(date +%s)
"${engine[@]}" build --quiet "${limits[@]}" "${mounts[@]}" "${build_args[@]}" \
  --tag "$image" . >"$work/build.log" 2>&1 || {
  status=$?
  tail -n 20 "$work/build.log" >&2
  fail "podman build exited $status (log above)"
}
echo "build: $(seconds "$start") s, image $(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%.2f GB", $1 / 1e9}')"

run() { "${engine[@]}" run --rm --network none "${limits[@]}" "$@"; }
expect() { # expect CODE COMMAND...: the command's exit code is CODE
  local code=$1
  shift
  set +e
  "$@" >"$work/last.log" 2>&1
  local got=$?
  set -e
  [ "$got" -eq "$code" ] || {
    tail -n 20 "$work/last.log" >&2
    fail "exit $got, not $code: ${*: -6}"
  }
}
owned_by_image_user() { # every file under $1 belongs to uid 1000
  local stray
  stray=$(find "$1" ! -uid 1000 -print -quit)
  [ -z "$stray" ] || fail "$stray is owned by uid $(stat -c %u "$stray"), not the image's uid 1000"
}

expect 0 run "$image" --version
grep -qx "bidsfusion, version $version" "$work/last.log" || fail "--version printed $(cat "$work/last.log")"
expect 0 run "$image" plugins
grep -q "objectives: L, CL, CS, S, AE" "$work/last.log" || fail "plugins lists no built-in objectives"

subjects=12 # at 2 folds, a hold-out and a validation set that hold both classes
mkdir -p "$work/bids" "$work/out" "$work/root-owned"
chown 1000:1000 "$work/out"
chmod 755 "$work/root-owned"
expect 73 run -v "$work/root-owned:/scratch" "$image" synth /scratch/bids --subjects 2
[ "$(wc -l <"$work/last.log")" -eq 1 ] || fail "an unwritable synth target gave more than one line"
start=$(date +%s)
# the mount point itself, as a user writes it: its parent (/) is not writable
chown 1000:1000 "$work/bids"
expect 0 run -v "$work/bids:/data" "$image" synth /data --subjects "$subjects" --sessions 1 \
  --volumes 50 --ad-fraction 0.5
[ -f "$work/bids/participants.tsv" ] || fail "synth wrote no participants.tsv"
owned_by_image_user "$work/bids"
echo "synth, $subjects subjects: $(seconds "$start") s"

expect 73 run -v "$work/bids:/data:ro" -v "$work/root-owned:/out" "$image" /data /out participant
[ "$(wc -l <"$work/last.log")" -eq 1 ] || fail "an unwritable OUTPUT_DIR gave more than one line"
participant=(run -v "$work/bids:/data:ro" -v "$work/out:/out" "$image" /data /out participant --nprocs 2)
start=$(date +%s)
expect 0 "${participant[@]}"
echo "participant level, $subjects subjects: $(seconds "$start") s"
for subject in $(seq -w 1 "$subjects"); do
  for map in anat/*_desc-brain_T1w func/*_stat-falff_boldmap; do
    compgen -G "$work/out/sub-$subject/ses-01/${map}.nii.gz" >/dev/null ||
      fail "sub-$subject has no ${map#*_} derivative"
  done
done
owned_by_image_user "$work/out"
expect 0 "${participant[@]}"
grep -q "skipped (complete) $subjects" "$work/last.log" || fail "the rerun did not skip the $subjects complete subjects"

start=$(date +%s)
expect 0 run -v "$work/bids:/data:ro" -v "$work/out:/out" "$image" /data /out group \
  --objective S-AE --input-size 16 --epochs 1 --batch-size 4 --folds 2 --n-trials 2 --seed 0
echo "group level, S-AE at 16^3, 1 epoch: $(seconds "$start") s"
[ -s "$work/out/group/report.html" ] || fail "the group run wrote no report.html"
grep -q "S-AE" "$work/out/group/evaluation.tsv" || fail "evaluation.tsv holds no S-AE row"
owned_by_image_user "$work/out"
echo "image test passed: $image"
