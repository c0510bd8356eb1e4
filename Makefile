# vnet — build, test, run. `sudo make up` and `sudo make test` are the two commands.
PREFIX    ?= /usr/local
DESTDIR   ?=
BINDIR    := $(PREFIX)/bin
LIBEXEC   := $(PREFIX)/libexec
LIBDIR    := $(PREFIX)/lib/vnet
CC        ?= gcc
CFLAGS    ?= -std=gnu11 -O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong
NPM       ?= npm

# Debian packages vnet needs at run time and for its tests.
RUN_DEBS  := nftables dnsmasq-base iproute2
TEST_DEBS := $(RUN_DEBS) qemu-system-x86 qemu-system-common busybox-static cpio gcc python3 util-linux dbus systemd libglib2.0-bin

TS_SRC    := $(shell find src -name '*.ts' 2>/dev/null)

.PHONY: all build deps test-deps up down test unit bench install uninstall clean

all: build

build: node_modules/.stamp dist/.stamp build/vnet-bridge-helper build/handoff

node_modules/.stamp: package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	@touch $@

dist/.stamp: node_modules/.stamp tsconfig.json $(TS_SRC)
	rm -rf dist
	npx tsc -p tsconfig.json
	@touch $@

build/vnet-bridge-helper: src/helper/vnet-bridge-helper.c
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $<

build/handoff: bench/handoff.c
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $<

# Install missing Debian packages (needs root; a no-op when all are there).
define apt_install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call apt_install,$(RUN_DEBS))

test-deps:
	$(call apt_install,$(TEST_DEBS))

# Quick start: build, start vnetd in the background, bring up the default network (virbr0).
up: deps build
	bin/vnet up default
	bin/vnet status

down:
	bin/vnet down default

test: test-deps build
	npx vitest run

unit: build
	npx vitest run test/unit

bench: test-deps build
	node bench/run.mjs

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXEC) $(DESTDIR)$(LIBDIR)
	cp -r dist node_modules package.json $(DESTDIR)$(LIBDIR)/
	install -d $(DESTDIR)$(LIBDIR)/bin
	install -m 0755 bin/vnet bin/vnetd $(DESTDIR)$(LIBDIR)/bin/
	ln -sf $(LIBDIR)/bin/vnet $(DESTDIR)$(BINDIR)/vnet
	ln -sf $(LIBDIR)/bin/vnetd $(DESTDIR)$(BINDIR)/vnetd
	install -m 0755 build/vnet-bridge-helper $(DESTDIR)$(LIBEXEC)/vnet-bridge-helper

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vnet $(DESTDIR)$(BINDIR)/vnetd $(DESTDIR)$(LIBEXEC)/vnet-bridge-helper
	rm -rf $(DESTDIR)$(LIBDIR)

clean:
	rm -rf dist build
