#!/bin/sh
# Post-build script of the staticlet BR2_EXTERNAL tree (see buildroot/README.md).
# $1 is the target directory; further arguments (BR2_ROOTFS_POST_SCRIPT_ARGS,
# meant for the board's own scripts) are ignored. Each board's post-build.sh is a
# link to this file: the board is the directory it is called from.
set -eu

TARGET_DIR="$1"
BOARD_DIR="$(cd "$(dirname "$0")" && pwd)"
BOARD="$(basename "$BOARD_DIR")"
# board-configs/ sits next to buildroot/ in the staticlet source tree.
CONFIG="$BOARD_DIR/../../../board-configs/$BOARD.yaml"

if [ ! -f "$CONFIG" ]; then
	echo "staticlet post-build: $CONFIG is missing" >&2
	exit 1
fi
install -D -m 0644 "$CONFIG" "$TARGET_DIR/etc/staticlet/config.yaml"

# Create the directories the board configuration names, so that they exist
# on the image even before a data partition is mounted over /data.
for key in rootDir podLogsDir; do
	dir="$(sed -n "s/^$key: *\([^ #]*\).*/\1/p" "$CONFIG")"
	if [ -n "$dir" ]; then
		mkdir -p "$TARGET_DIR$dir"
	fi
done

# Raspberry Pi kernels leave the memory cgroup controller disabled unless
# the command line enables it; without it pods get no memory limits.
CMDLINE="${BINARIES_DIR:-}/rpi-firmware/cmdline.txt"
if [ -n "${BINARIES_DIR:-}" ] && [ -f "$CMDLINE" ] &&
	! grep -q 'cgroup_enable=memory' "$CMDLINE"; then
	sed -i '1s/$/ cgroup_enable=memory cgroup_memory=1/' "$CMDLINE"
fi
