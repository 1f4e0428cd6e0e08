#!/usr/bin/env bash
# What the real-host tests and `poolvisor bench migrate` need on a Debian 12 machine (root, apt):
# libvirt + QEMU (TCG is enough), busybox/cpio for the lab guest, LXC for containers. libvirt-python
# is a pip extra (`.[libvirt]`, built against libvirt-dev; the Makefile adds it when pkg-config
# finds libvirt). ~15 s. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# libvirt-daemon-system is left out on purpose: it drags in systemd. The lab starts libvirtd by hand.
apt-get install -y -q --no-install-recommends \
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients libvirt-dev pkg-config \
  qemu-system-x86 qemu-utils busybox-static cpio socat \
  lxc lxc-templates iptables  # iptables: libvirt 9 applies firewall rules when it starts a network
# libvirtd resolves its default QEMU user at start, even when qemu.conf says root; without
# libvirt-daemon-system nobody creates it.
getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
getent passwd libvirt-qemu >/dev/null || useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt \
  --no-create-home --shell /usr/sbin/nologin libvirt-qemu
