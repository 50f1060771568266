# SPDX-License-Identifier: MIT
#
#   make                      build the generator and the man pages
#   make install              install them (DESTDIR=, PREFIX=/usr)
#   make install NOBUILD=1    install what is already built (as root, after
#                             `make` as a user): never runs cargo; man pages
#                             that are missing are built (needs scdoc), a
#                             missing program stops it before anything is
#                             installed
#   make deb                  the Debian package, with cargo-deb
#   make uninstall            remove what `make install` installed

INSTALL = install
CARGO = cargo
CARGOFLAGS =
SCDOC = scdoc
PKG_CONFIG = pkg-config
PREFIX = /usr
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
# The shipped configuration: the generator reads /usr/lib/systemd and
# /usr/local/lib/systemd (then /etc/systemd and /run/systemd).
CONFDIR = $(PREFIX)/lib/systemd
CARGO_TARGET_DIR ?= target
export CARGO_TARGET_DIR

# Where systemd looks for system generators; pkg-config knows the
# distribution's answer.
SYSTEMD_SYSTEM_GENERATOR_DIR := $(shell $(PKG_CONFIG) --variable=systemdsystemgeneratordir systemd 2>/dev/null)
ifeq ($(strip $(SYSTEMD_SYSTEM_GENERATOR_DIR)),)
SYSTEMD_SYSTEM_GENERATOR_DIR := /usr/lib/systemd/system-generators
endif

NAME = nix-confinement-generator
VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
BINARY = $(CARGO_TARGET_DIR)/release/$(NAME)
CONFIG = generator.d/$(NAME).conf
MAN8 = packaging/man/$(NAME).8
MAN5 = packaging/man/nix-confinement.5
MANPAGES = $(MAN8) $(MAN5)

.DEFAULT_GOAL := build
.PHONY: build program man check install uninstall deb clean

build: program man

program:
	$(CARGO) build --release $(CARGOFLAGS)

man: $(MANPAGES)

packaging/man/%: packaging/man/%.scd Cargo.toml
	@command -v $(SCDOC) >/dev/null || { echo "$(SCDOC) not found: install scdoc (Debian: apt-get install scdoc)" >&2; exit 1; }
	sed -e 's/@VERSION@/$(VERSION)/g' $< | $(SCDOC) > $@.tmp
	mv $@.tmp $@

check: program
	$(CARGO) test --release $(CARGOFLAGS)

ifndef NOBUILD
install: build
else
# Nothing is installed unless everything is there: the man pages are quick to
# build without cargo; the program is not, so it must be built first.
install: $(BINARY) $(MANPAGES)
$(BINARY):
	@echo "$(BINARY) is not built: run \`make\` (as the user who builds), then \`make install NOBUILD=1\`" >&2; exit 1
endif

install:
	$(INSTALL) -Dpm755 $(BINARY) -t $(DESTDIR)$(SYSTEMD_SYSTEM_GENERATOR_DIR)/
	$(INSTALL) -dm755 $(DESTDIR)$(BINDIR)
	ln -sfn $(SYSTEMD_SYSTEM_GENERATOR_DIR)/$(NAME) $(DESTDIR)$(BINDIR)/$(NAME)
	$(INSTALL) -Dpm644 $(CONFIG) -t $(DESTDIR)$(CONFDIR)/
	$(INSTALL) -Dpm644 $(MAN8) -t $(DESTDIR)$(MANDIR)/man8/
	$(INSTALL) -Dpm644 $(MAN5) -t $(DESTDIR)$(MANDIR)/man5/

uninstall:
	rm -f $(DESTDIR)$(SYSTEMD_SYSTEM_GENERATOR_DIR)/$(NAME) \
		$(DESTDIR)$(BINDIR)/$(NAME) \
		$(DESTDIR)$(CONFDIR)/$(NAME).conf \
		$(DESTDIR)$(MANDIR)/man8/$(NAME).8 \
		$(DESTDIR)$(MANDIR)/man5/nix-confinement.5

# cargo-deb builds the release binary itself and reads the man pages built
# here; the package lands in $(CARGO_TARGET_DIR)/debian/.
deb: man
	$(CARGO) deb $(CARGOFLAGS)

clean:
	rm -f $(MANPAGES)
	$(CARGO) clean
