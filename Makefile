# vnet — build, test, run. `sudo make up` and `sudo make test` are the two commands.
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    := $(PREFIX)/bin
LIBEXEC   := $(PREFIX)/libexec
LIBDIR    := $(PREFIX)/lib/vnet
CC        ?= gcc
CFLAGS    ?= -std=gnu11 -O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong
NPM       ?= npm
# `make install` destinations besides the three above. systemd, systemd-tmpfiles and the D-Bus
# system bus read these $(PREFIX) folders for /usr/local and /usr; the bus reads policy only
# from /etc/dbus-1/system.d (or /usr/share), hence SYSCONFDIR.
SYSCONFDIR     ?= /etc
UNITDIR        ?= $(PREFIX)/lib/systemd/system
TMPFILESDIR    ?= $(PREFIX)/lib/tmpfiles.d
SYSUSERSDIR    ?= $(PREFIX)/lib/sysusers.d
DBUSPOLICYDIR  ?= $(SYSCONFDIR)/dbus-1/system.d
DBUSSERVICEDIR ?= $(PREFIX)/share/dbus-1/system-services
# firewalld reads zones and policies from /usr/lib/firewalld (the distribution's) and
# /etc/firewalld (the admin's), never from /usr/local: a PREFIX=/usr build puts vnet's beside
# the distribution's, any other in SYSCONFDIR.
FIREWALLDDIR   ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/firewalld,$(SYSCONFDIR)/firewalld)
# AppArmor's profile of dnsmasq (Ubuntu) includes local/usr.sbin.dnsmasq for site additions: vnet's
# rules go in local/vnet-dnsmasq, included from there (see `install`).
APPARMORDIR    ?= $(SYSCONFDIR)/apparmor.d
APPARMOR_HOOK  := $(APPARMORDIR)/local/usr.sbin.dnsmasq
APPARMOR_LINE  := include if exists <local/vnet-dnsmasq>
MANIFEST       := $(LIBDIR)/install-manifest
STAGE          := build/install-root
FIX_PREFIX     := sed -e '/^[[:space:]]*[\#;]/!s|/usr/local|$(PREFIX)|g'

# Debian packages vnet needs at run time, to build (the static helper needs libc6-dev's
# libc.a), and for its tests and benchmarks.
RUN_DEBS   := nftables dnsmasq-base iproute2
BUILD_DEBS := gcc libc6-dev make
# apparmor is for its apparmor_parser only: test/integration/doctor.test.ts compiles vnet's rules for
# dnsmasq into a dnsmasq profile (-Q: nothing is loaded; this kernel may have no AppArmor at all).
# libvirt's daemon, virsh and the default.xml Debian ships are for test/integration/libvirt-import.test.ts,
# which runs its own libvirtd inside a network and mount namespace. None of the three starts a
# daemon: libvirt-daemon has no units (libvirt-daemon-system has them, and is not installed), and
# libvirt-daemon-config-network only restarts a libvirtd already running. The install runs under a
# deny-all policy-rc.d all the same (below), so no package can start a service in the root namespace.
TEST_DEBS  := $(RUN_DEBS) $(BUILD_DEBS) qemu-system-x86 qemu-system-common busybox-static cpio python3 util-linux dbus systemd libglib2.0-bin \
              libnss-extrausers libvirt-daemon libvirt-clients libvirt-daemon-config-network \
              firewalld iptables apparmor
# Services among TEST_DEBS: the tests run their own copies in namespaces, so a fresh install
# neither starts them on this machine (a policy-rc.d that says no, only while apt runs, when
# the machine has none) nor enables them for its next boot (apparmor's unit would load the
# profiles in /etc/apparmor.d at boot, where the kernel has AppArmor).
TEST_SERVICES := firewalld apparmor
# `make bench` also runs libvirt's daemon and virsh (in namespaces of their own; libvirt-daemon
# ships no unit or start script, so installing it starts nothing), its firewall tool, and draws
# its charts with rsvg-convert.
BENCH_DEBS := libvirt-daemon libvirt-clients iptables librsvg2-bin

TS_SRC    := $(shell find src -name '*.ts' 2>/dev/null)

# The system account vnet's dnsmasq runs as (etc/sysusers.d/vnet.conf says the same):
# its own user and group, shared with no other service.
DNSMASQ_USER := vnet-dnsmasq
ENSURE_ACCOUNT := getent passwd $(DNSMASQ_USER) >/dev/null || { echo 'creating the system account $(DNSMASQ_USER)'; \
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group $(DNSMASQ_USER); }

.PHONY: all build deps test-deps bench-deps up down test unit bench install uninstall clean

all: build

build: node_modules/.stamp dist/.stamp build/vnet-bridge-helper

# --ignore-scripts: both native dependencies (netlink, koffi) ship prebuilt binaries, so
# nothing is compiled; package.json's allowScripts says the same only to npm >= 11.16.
node_modules/.stamp: package.json package-lock.json
	$(NPM) ci --ignore-scripts --no-audit --no-fund
	@touch $@

# tsc's dist/, then each program bundled into one CommonJS file (tools/bundle.mjs says why),
# dist/bundle/vnet.cjs and vnetd.cjs, which bin/vnet and bin/vnetd load.
dist/.stamp: node_modules/.stamp tsconfig.json $(TS_SRC) tools/bundle.mjs
	rm -rf dist
	npx tsc -p tsconfig.json
	node tools/bundle.mjs
	@touch $@

# Static: QEMU execs it once per NIC, and a static binary skips the dynamic loader (~0.3 ms).
build/vnet-bridge-helper: src/helper/vnet-bridge-helper.c Makefile
	@mkdir -p build
	$(CC) $(CFLAGS) -static -o $@ $<

# The hand-off timer of `make bench`, also run by test/integration/tap.test.ts; not part of `build`.
build/handoff: bench/handoff.c
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $<

# The floor of a tap hand-off for `make bench`: a static helper that makes the tap itself.
build/tap-floor: bench/tap-floor.c
	@mkdir -p build
	$(CC) $(CFLAGS) -static -o $@ $<

# Install missing Debian packages (needs root; a no-op when all are there). Maintainer scripts
# start services through invoke-rc.d/deb-systemd-invoke, which ask /usr/sbin/policy-rc.d first:
# where there is none, a temporary one answers 101 ("do not start") for the install and is removed
# after it; an admin's own policy-rc.d is left as it is.
define apt_install
	missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  policy=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\n# vnet make: no service starts while packages install\nexit 101\n' > $$policy; chmod 0755 $$policy; \
	  fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; rc=$$?; \
	  if [ -n "$$policy" ]; then rm -f $$policy; fi; \
	  exit $$rc; \
	fi
endef

deps:
	@$(call apt_install,$(RUN_DEBS) $(BUILD_DEBS))
	@$(ENSURE_ACCOUNT)

test-deps:
	@fresh=""; for s in $(TEST_SERVICES); do \
	  dpkg-query -W -f='$${Status}' $$s 2>/dev/null | grep -q 'install ok installed' || fresh="$$fresh $$s"; \
	done; \
	( $(call apt_install,$(TEST_DEBS)) ); rc=$$?; \
	for s in $$fresh; do \
	  if dpkg-query -W -f='$${Status}' $$s 2>/dev/null | grep -q 'install ok installed' && command -v systemctl >/dev/null; then \
	    echo "systemctl disable $$s.service (the tests run their own)"; systemctl disable $$s.service; \
	  fi; \
	done; \
	exit $$rc
	@$(ENSURE_ACCOUNT)

bench-deps: test-deps
	$(call apt_install,$(BENCH_DEBS))

# Quick start: build, start vnetd in the background, bring up the default network (virbr0).
up: deps build
	bin/vnet up default
	bin/vnet status

down:
	bin/vnet down default

# vitest strips types without checking them: the tests are type-checked with the sources first
test: test-deps build build/handoff
	npx tsc -p tsconfig.test.json
	npx vitest run

unit: build
	npx vitest run test/unit

# Up to 15 minutes; results in bench/results/ (see bench/README.md). BENCH_ARGS passes options.
bench: test-deps bench-deps build build/handoff build/tap-floor
	node bench/run.mjs $(BENCH_ARGS)

# `make install`: the program in $(LIBDIR) (dist/, bin/, production node_modules from
# package-lock.json), links in $(BINDIR), the helper (0755, not setuid), the systemd units,
# tmpfiles.d and sysusers.d entries, D-Bus policy and activation file with /usr/local
# rewritten to $(PREFIX), the example network, and firewalld zones and policies in
# $(FIREWALLDDIR) (firewalld, when it runs, reloads to read them). Everything is staged in $(STAGE) first; $(MANIFEST) lists every
# file put ("f PATH") and every folder made ("d PATH", only those that did not exist), so
# `make uninstall` removes exactly that: never a network the admin wrote, never a folder
# that was there before. Paths in the manifest are without $(DESTDIR). Without DESTDIR it
# also creates dnsmasq's account (systemd-sysusers, or useradd where there is none); with
# DESTDIR (packaging) the sysusers.d entry is for the package to apply.
install: build
	rm -rf $(STAGE) build/install-manifest
	umask 022 && mkdir -p $(STAGE)$(LIBDIR)/bin $(STAGE)$(BINDIR) $(STAGE)$(LIBEXEC) $(STAGE)$(UNITDIR) \
	  $(STAGE)$(TMPFILESDIR) $(STAGE)$(SYSUSERSDIR) $(STAGE)$(DBUSPOLICYDIR) $(STAGE)$(DBUSSERVICEDIR) $(STAGE)$(SYSCONFDIR)/vnet/networks \
	  $(STAGE)$(FIREWALLDDIR)/zones $(STAGE)$(FIREWALLDDIR)/policies $(STAGE)$(APPARMORDIR)/local
	umask 022 && cp -r dist $(STAGE)$(LIBDIR)/dist && find $(STAGE)$(LIBDIR)/dist \( -name '*.map' -o -name .stamp \) -delete
	install -m 0755 bin/vnet bin/vnetd $(STAGE)$(LIBDIR)/bin/
	install -m 0644 bin/package.json $(STAGE)$(LIBDIR)/bin/
	install -m 0644 package.json package-lock.json $(STAGE)$(LIBDIR)/
	cd $(STAGE)$(LIBDIR) && umask 022 && $(NPM) ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund
	ln -s $(LIBDIR)/bin/vnet $(STAGE)$(BINDIR)/vnet
	ln -s $(LIBDIR)/bin/vnetd $(STAGE)$(BINDIR)/vnetd
	install -m 0755 build/vnet-bridge-helper $(STAGE)$(LIBEXEC)/vnet-bridge-helper
	$(FIX_PREFIX) systemd/vnetd.service > $(STAGE)$(UNITDIR)/vnetd.service
	$(FIX_PREFIX) systemd/vnetd.socket > $(STAGE)$(UNITDIR)/vnetd.socket
	$(FIX_PREFIX) etc/dbus-1/system-services/org.vnet.Vnet1.service > $(STAGE)$(DBUSSERVICEDIR)/org.vnet.Vnet1.service
	chmod 0644 $(STAGE)$(UNITDIR)/vnetd.service $(STAGE)$(UNITDIR)/vnetd.socket $(STAGE)$(DBUSSERVICEDIR)/org.vnet.Vnet1.service
	install -m 0644 etc/tmpfiles.d/vnet.conf $(STAGE)$(TMPFILESDIR)/vnet.conf
	install -m 0644 etc/sysusers.d/vnet.conf $(STAGE)$(SYSUSERSDIR)/vnet.conf
	install -m 0644 etc/dbus-1/system.d/org.vnet.Vnet1.conf $(STAGE)$(DBUSPOLICYDIR)/org.vnet.Vnet1.conf
	install -m 0644 etc/vnet/networks/example.toml.example $(STAGE)$(SYSCONFDIR)/vnet/networks/example.toml.example
	install -m 0644 etc/firewalld/zones/*.xml $(STAGE)$(FIREWALLDDIR)/zones/
	install -m 0644 etc/firewalld/policies/*.xml $(STAGE)$(FIREWALLDDIR)/policies/
	install -m 0644 etc/apparmor.d/local/vnet-dnsmasq $(STAGE)$(APPARMORDIR)/local/vnet-dnsmasq
	@# dnsmasq profile's hook: made (and listed in the manifest) where the host has none; an existing
	@# one is the admin's, and gets one line after the copy below
	if [ ! -e '$(DESTDIR)$(APPARMOR_HOOK)' ]; then \
	  printf '# Site-specific additions and overrides for usr.sbin.dnsmasq (made by vnet'"'"'s make install)\n$(APPARMOR_LINE)\n' > $(STAGE)$(APPARMOR_HOOK); \
	  chmod 0644 $(STAGE)$(APPARMOR_HOOK); \
	fi
	@# The manifest: what is staged, the folders that are new (dist/ and node_modules/ are replaced
	@# whole, so theirs always count), and what an earlier install listed.
	{ find $(STAGE) -mindepth 1 ! -type d | sed 's|^$(STAGE)|f |'; \
	  find $(STAGE) -mindepth 1 -type d | sed 's|^$(STAGE)||' | \
	    while IFS= read -r d; do case "$$d" in \
	      $(LIBDIR)/dist|$(LIBDIR)/dist/*|$(LIBDIR)/node_modules|$(LIBDIR)/node_modules/*) echo "d $$d";; \
	      *) [ -d "$(DESTDIR)$$d" ] || echo "d $$d";; \
	    esac; done; \
	  echo 'f $(MANIFEST)'; \
	  if [ -f '$(DESTDIR)$(MANIFEST)' ]; then cat '$(DESTDIR)$(MANIFEST)'; fi; \
	} | LC_ALL=C sort -u > build/install-manifest
	install -m 0644 build/install-manifest $(STAGE)$(MANIFEST)
	@# Replace the previous program tree wholesale, then copy; existing folders keep their owner and mode.
	rm -rf $(DESTDIR)$(LIBDIR)/dist $(DESTDIR)$(LIBDIR)/node_modules
	mkdir -p '$(DESTDIR)/'
	tar -C $(STAGE) -cf - . | tar -C '$(DESTDIR)/' -xf - --no-overwrite-dir
	rm -rf $(STAGE) build/install-manifest
	@if ! grep -qs 'local/vnet-dnsmasq' '$(DESTDIR)$(APPARMOR_HOOK)'; then \
	  echo "adding '$(APPARMOR_LINE)' to $(DESTDIR)$(APPARMOR_HOOK)"; echo '$(APPARMOR_LINE)' >> '$(DESTDIR)$(APPARMOR_HOOK)'; \
	fi
	@if [ -z '$(DESTDIR)' ] && [ -f $(APPARMORDIR)/usr.sbin.dnsmasq ] && command -v apparmor_parser >/dev/null && [ -d /sys/kernel/security/apparmor ]; then \
	  echo 'apparmor_parser -r $(APPARMORDIR)/usr.sbin.dnsmasq (vnet'"'"'s rules for its dnsmasq)'; apparmor_parser -r $(APPARMORDIR)/usr.sbin.dnsmasq; \
	fi
	@if [ -z '$(DESTDIR)' ]; then \
	  if command -v systemd-sysusers >/dev/null; then \
	    echo 'systemd-sysusers $(SYSUSERSDIR)/vnet.conf'; systemd-sysusers $(SYSUSERSDIR)/vnet.conf; \
	  fi; \
	  $(ENSURE_ACCOUNT); \
	fi
	@if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
	  echo 'systemctl daemon-reload; systemd-tmpfiles --create $(TMPFILESDIR)/vnet.conf'; \
	  systemctl daemon-reload && systemd-tmpfiles --create $(TMPFILESDIR)/vnet.conf; \
	  echo 'vnet installed; start it with: systemctl enable --now vnetd.socket'; \
	fi
	@if [ -z '$(DESTDIR)' ] && command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then \
	  echo 'firewall-cmd --reload (vnet zones and policies)'; firewall-cmd --reload; \
	fi

# Removes what $(MANIFEST) lists (after stopping the units on a live system); folders only
# when empty. Leaves /var/lib/vnet (leases), /etc/qemu and networks the admin wrote.
uninstall:
	@m='$(DESTDIR)$(MANIFEST)'; \
	if [ ! -f "$$m" ]; then \
	  echo "make uninstall: no manifest $$m: nothing installed with DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)'" >&2; exit 1; \
	fi; \
	if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
	  echo 'systemctl disable --now vnetd.socket vnetd.service'; \
	  systemctl disable --now vnetd.socket vnetd.service || true; \
	fi; \
	list=$$(cat "$$m") || exit 1; \
	echo "removing the files and empty folders listed in $$m"; \
	printf '%s\n' "$$list" | sed -n 's|^f |$(DESTDIR)|p' | tr '\n' '\0' | xargs -0 -r rm -f -- || exit 1; \
	printf '%s\n' "$$list" | sed -n 's|^d ||p' | LC_ALL=C sort -r | while IFS= read -r d; do \
	  if [ -d "$(DESTDIR)$$d" ]; then rmdir --ignore-fail-on-non-empty -- "$(DESTDIR)$$d" || exit 1; fi; \
	done || exit 1; \
	if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	if [ -z '$(DESTDIR)' ] && command -v firewall-cmd >/dev/null && firewall-cmd --state >/dev/null 2>&1; then firewall-cmd --reload; fi

clean:
	rm -rf dist build
