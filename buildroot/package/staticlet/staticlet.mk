################################################################################
#
# staticlet
#
################################################################################

STATICLET_VERSION = 0.1.0
STATICLET_SITE = $(call github,staticlet,staticlet,v$(STATICLET_VERSION))
STATICLET_LICENSE = Apache-2.0
STATICLET_LICENSE_FILES = LICENSE

# For STATICLET_OVERRIDE_SRCDIR (local.mk) and the local site method: do not
# copy a developer's build output into the package build directory.
STATICLET_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = --exclude /target

# Containers outlive the agent, so the agent's directories and the manifest
# directory exist even before the first pod.
define STATICLET_INSTALL_DIRS
	mkdir -p $(TARGET_DIR)/etc/kubernetes/manifests \
		$(TARGET_DIR)/etc/staticlet \
		$(TARGET_DIR)/var/lib/staticlet
endef
STATICLET_POST_INSTALL_TARGET_HOOKS += STATICLET_INSTALL_DIRS

define STATICLET_INSTALL_INIT_SYSV
	$(INSTALL) -D -m 0755 $(STATICLET_PKGDIR)/S95staticlet \
		$(TARGET_DIR)/etc/init.d/S95staticlet
endef

define STATICLET_INSTALL_INIT_SYSTEMD
	$(INSTALL) -D -m 0644 $(STATICLET_PKGDIR)/staticlet.service \
		$(TARGET_DIR)/usr/lib/systemd/system/staticlet.service
endef

# The default pod network takes its addresses from host-local, which some
# Buildroot versions of cni-plugins do not build: add it when it is missing
# (the build targets are expanded when the package builds, after this).
ifeq ($(BR2_PACKAGE_CNI_PLUGINS),y)
ifeq ($(filter plugins/ipam/host-local,$(CNI_PLUGINS_BUILD_TARGETS)),)
CNI_PLUGINS_BUILD_TARGETS += plugins/ipam/host-local
endif
endif

# What crun needs to run pods: namespaces, cgroups (v1 and v2, CPU and
# memory limits, device rules through BPF on v2), seccomp, overlayfs, and
# veth/bridge for pods with their own network namespace, with the netfilter
# NAT, matches and targets the bridge (ipMasq) and portmap plugins' iptables
# rules use. IKCONFIG_PROC lets "staticlet doctor" read the running kernel's
# options from /proc/config.gz.
define STATICLET_LINUX_CONFIG_FIXUPS
	$(call KCONFIG_ENABLE_OPT,CONFIG_IKCONFIG)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IKCONFIG_PROC)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUPS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_MEMCG)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_SCHED)
	$(call KCONFIG_ENABLE_OPT,CONFIG_FAIR_GROUP_SCHED)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CFS_BANDWIDTH)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_FREEZER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_DEVICE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_CPUACCT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_PIDS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CGROUP_BPF)
	$(call KCONFIG_ENABLE_OPT,CONFIG_CPUSETS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_BPF_SYSCALL)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NAMESPACES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_UTS_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IPC_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_PID_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NET_NS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_SECCOMP)
	$(call KCONFIG_ENABLE_OPT,CONFIG_OVERLAY_FS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_KEYS)
	$(call KCONFIG_ENABLE_OPT,CONFIG_POSIX_MQUEUE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_VETH)
	$(call KCONFIG_ENABLE_OPT,CONFIG_BRIDGE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_ADVANCED)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_CONNTRACK)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NF_NAT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XTABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_NAT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MARK)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_TARGET_MASQUERADE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_ADDRTYPE)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_COMMENT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_NETFILTER_XT_MATCH_MULTIPORT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_IPTABLES)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_FILTER)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_NAT)
	$(call KCONFIG_ENABLE_OPT,CONFIG_IP_NF_TARGET_MASQUERADE)
endef

$(eval $(cargo-package))
