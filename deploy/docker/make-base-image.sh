#!/usr/bin/env bash
# Creates the local image `debian:bookworm-slim` from Debian packages, for machines that
# cannot pull from a registry. Usage: deploy/docker/make-base-image.sh
#
# The images of deploy/docker/ start `FROM debian:bookworm-slim`. Where Docker Hub is
# reachable, `docker pull debian:bookworm-slim` gives that image and this script is not
# needed. Where it is not, this script builds an equivalent one: `debootstrap
# --variant=minbase bookworm` (the essential and required packages, with apt), trimmed
# the way the official slim image is (no manuals, no documentation but copyright
# files, no translations, no apt lists; dpkg told to keep it that way for later
# installs), then `docker import`ed under the same tag.
#
# Idempotent: does nothing when the tag exists (`docker rmi debian:bookworm-slim` to
# make it again). Installs debootstrap with apt-get when it is missing. Needs root for
# debootstrap (sudo is used when not root). Takes a minute or two, mostly downloads.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), BASE_IMAGE (the
# tag to create, default debian:bookworm-slim).
set -euo pipefail

image="${BASE_IMAGE:-debian:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "make-base-image: $image exists, nothing to do" >&2
    exit 0
fi

as_root=()
[[ $(id -u) == 0 ]] || as_root=(sudo)

if ! command -v debootstrap >/dev/null 2>&1 && [[ ! -x /usr/sbin/debootstrap ]]; then
    echo "make-base-image: installing debootstrap" >&2
    install_debootstrap() {
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends debootstrap >&2
    }
    install_debootstrap || { "${as_root[@]}" apt-get update >&2 && install_debootstrap; }
fi
debootstrap_bin="$(command -v debootstrap || echo /usr/sbin/debootstrap)"

started=$SECONDS
rootfs="$(mktemp -d "${TMPDIR:-/tmp}/essaim-base-image.XXXXXX")"
# The tree belongs to root (debootstrap made it): remove it as root, whatever happens.
trap '"${as_root[@]}" rm -rf "$rootfs"' EXIT

echo "make-base-image: debootstrap --variant=minbase $suite from $mirror" >&2
"${as_root[@]}" "$debootstrap_bin" --variant=minbase "$suite" "$rootfs" "$mirror" >&2 \
    || { echo "make-base-image: debootstrap failed (see above); is $mirror reachable?" >&2; exit 1; }

# Everything below edits the new tree only, as root, through one shell.
"${as_root[@]}" env ROOTFS="$rootfs" MIRROR="$mirror" SUITE="$suite" bash -euo pipefail <<'TRIM'
cd "$ROOTFS"

# Apt sources as in the official image (deb822, with updates and security).
rm -f etc/apt/sources.list
cat > etc/apt/sources.list.d/debian.sources <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# Keep later `apt-get install`s slim too, as the official slim image does.
cat > etc/dpkg/dpkg.cfg.d/docker <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat > etc/apt/apt.conf.d/docker-clean <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'Acquire::Languages "none";' > etc/apt/apt.conf.d/docker-no-languages
echo 'Acquire::GzipIndexes "true";' > etc/apt/apt.conf.d/docker-gzip-indexes
printf 'Apt::AutoRemove::SuggestsImportant "false";\n' > etc/apt/apt.conf.d/docker-autoremove-suggests
# No init system in a container: packages must not try to start services.
printf '#!/bin/sh\nexit 101\n' > usr/sbin/policy-rc.d
chmod 755 usr/sbin/policy-rc.d

# Trim what the exclusions above would have kept out.
find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
find usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf usr/share/man/* usr/share/groff/* usr/share/info/* usr/share/lintian/* usr/share/linda/*
find usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb
rm -rf var/cache/debconf/*-old var/lib/dpkg/*-old tmp/* var/tmp/*
find var/log -type f -delete
# Host-specific files: Docker provides them in each container.
rm -f etc/hostname etc/resolv.conf etc/machine-id var/lib/dbus/machine-id
: > etc/machine-id
TRIM

echo "make-base-image: importing as $image" >&2
"${as_root[@]}" tar --numeric-owner --xattrs -C "$rootfs" -c . \
    | docker import \
        --change 'CMD ["bash"]' \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --message "debootstrap --variant=minbase $suite $mirror, trimmed like the slim image" \
        - "$image" >/dev/null
size=$(docker image inspect --format '{{.Size}}' "$image")
echo "make-base-image: $image created in $((SECONDS - started)) s, $((size / 1000000)) MB" >&2
