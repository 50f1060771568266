//! The named sets of `X-ConfinementHostPaths=`: the host files that common
//! needs take, as Debian and Ubuntu, Fedora and NixOS lay them out. A
//! member that does not exist on the host is left out quietly (each set
//! lists the places of several distributions); see nix-confinement(5).

/// A named set of host paths (`@name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostSet {
    /// Network name resolution.
    Resolve,
    /// The TLS trust store.
    Tls,
    /// The time zone.
    Timezone,
    /// User and group names (never their passwords).
    Users,
}

/// Every set, in the order the documentation lists them.
pub const ALL: [HostSet; 4] = [
    HostSet::Resolve,
    HostSet::Tls,
    HostSet::Timezone,
    HostSet::Users,
];

const RESOLVE: &[&str] = &[
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
];

/// Debian and Ubuntu: the bundle and the hashed links in `/etc/ssl/certs`,
/// which link into `/usr/share/ca-certificates` and
/// `/usr/local/share/ca-certificates`. Fedora: `/etc/ssl/certs` links to
/// `/etc/pki/tls/certs`, whose bundle links into
/// `/etc/pki/ca-trust/extracted`.
const TLS: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/ssl/cert.pem",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/pki/tls/certs",
    "/etc/pki/tls/cert.pem",
    "/etc/pki/ca-trust/extracted",
];

/// NixOS: `/etc/ssl/certs` holds links through `/etc/static` into the
/// store, so the bundles are named one by one (each then links straight to
/// its store path), not the directory.
const TLS_NIXOS: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/certs/ca-bundle.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

const TIMEZONE: &[&str] = &[
    "/etc/localtime",
    "/etc/timezone",
    "/etc/zoneinfo",
    "/usr/share/zoneinfo",
];

const USERS: &[&str] = &["/etc/passwd", "/etc/group", "/etc/nsswitch.conf"];

impl HostSet {
    pub fn parse(name: &str) -> Option<HostSet> {
        ALL.into_iter().find(|set| set.name() == name)
    }

    /// Its name, without the `@`.
    pub fn name(self) -> &'static str {
        match self {
            HostSet::Resolve => "resolve",
            HostSet::Tls => "tls",
            HostSet::Timezone => "timezone",
            HostSet::Users => "users",
        }
    }

    /// The names of every set, for messages: `@resolve, @tls, ...`.
    pub fn names() -> String {
        ALL.map(|set| format!("@{}", set.name())).join(", ")
    }

    /// Its members on a host laid out as NixOS (`nixos`) or otherwise.
    pub fn members(self, nixos: bool) -> &'static [&'static str] {
        match self {
            HostSet::Resolve => RESOLVE,
            HostSet::Tls if nixos => TLS_NIXOS,
            HostSet::Tls => TLS,
            HostSet::Timezone => TIMEZONE,
            HostSet::Users => USERS,
        }
    }
}

impl std::fmt::Display for HostSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "@{}", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_members_are_absolute() {
        for set in ALL {
            assert_eq!(HostSet::parse(set.name()), Some(set));
            for nixos in [false, true] {
                for member in set.members(nixos) {
                    assert!(member.starts_with('/'), "{member}");
                }
            }
        }
        assert_eq!(HostSet::parse("shadow"), None);
        assert_eq!(HostSet::names(), "@resolve, @tls, @timezone, @users");
    }
}
