//! `X-ConfinementHostPaths=` end to end on roots built with real Nix: the
//! drop-in lines, the skeleton's record, store paths joining the closure
//! (NixOS's `/etc/x -> /etc/static/x -> /nix/store/...`), refusals that
//! block the unit, warnings for missing paths, `check` and `explain`. Every
//! drop-in is checked with `systemd-analyze verify`.

mod support;

use std::os::unix::fs::PermissionsExt;
use support::{TestRoot, store_path};

/// A store path registered without references, with an executable
/// `bin/<name>`.
fn program(root: &TestRoot, seed: u64, name: &str) -> String {
    let path = store_path(seed, name);
    root.register(&[(&path, &[])]);
    root.write_executable(&format!("{path}/bin/{name}"), "#!/bin/sh\n");
    path
}

fn chmod(root: &TestRoot, logical: &str, mode: u32) {
    std::fs::set_permissions(root.path(logical), std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A host laid out as Debian with systemd-resolved: `/etc/resolv.conf` a
/// link into `/run`, the time zone a link into `/usr/share/zoneinfo`, the
/// TLS store's links into `/usr/share/ca-certificates`, and secrets beside.
fn debian_host(root: &TestRoot) {
    root.write("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
    root.write("/etc/group", "root:x:0:\n");
    root.write("/etc/shadow", "root:*:1::::::\n");
    chmod(root, "/etc/shadow", 0o640);
    root.write("/etc/hosts", "127.0.0.1 localhost\n");
    root.write("/etc/nsswitch.conf", "hosts: files dns\n");
    root.symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        "/etc/resolv.conf",
    );
    root.write(
        "/run/systemd/resolve/stub-resolv.conf",
        "nameserver 127.0.0.53\n",
    );
    std::os::unix::net::UnixListener::bind(root.path("/run/systemd/resolve/io.systemd.Resolve"))
        .unwrap();
    std::os::unix::net::UnixListener::bind(root.path("/run/systemd/resolve/other.socket")).unwrap();
    root.write("/usr/share/zoneinfo/Europe/Berlin", "TZif2");
    root.symlink("/usr/share/zoneinfo/Europe/Berlin", "/etc/localtime");
    root.write("/etc/timezone", "Europe/Berlin\n");
    root.write("/usr/share/ca-certificates/mozilla/A.crt", "-----BEGIN");
    root.symlink(
        "/usr/share/ca-certificates/mozilla/A.crt",
        "/etc/ssl/certs/A.pem",
    );
    root.write("/etc/ssl/certs/ca-certificates.crt", "-----BEGIN");
    root.write("/etc/ssl/private/host.key", "secret");
}

fn unit_with(root: &TestRoot, app: &str, host_paths: &str) {
    root.unit(
        "a.service",
        &format!(
            "[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n\
             X-ConfinementHostPaths={host_paths}\n"
        ),
    );
}

/// The lines of a drop-in that come from the host paths.
fn host_lines(dropin: &str) -> Vec<&str> {
    dropin
        .lines()
        .filter(|l| {
            l.contains("nix-confinement-host")
                || l.starts_with("BindReadOnlyPaths=-")
                || l.starts_with("InaccessiblePaths=-+/run/systemd")
        })
        .collect()
}

/// The digest of the skeleton a drop-in requires.
fn skeleton_of(dropin: &str) -> String {
    dropin
        .lines()
        .find_map(|l| l.strip_prefix("Requires=nix-confinement-host@"))
        .and_then(|rest| rest.strip_suffix(".service"))
        .expect("the drop-in requires a skeleton")
        .to_owned()
}

#[test]
fn debian_sets_show_links_files_and_the_resolver_directory() {
    let root = TestRoot::new("host-debian");
    debian_host(&root);
    let app = program(&root, 1, "app");
    unit_with(&root, &app, "@resolve @tls @timezone @users");
    let run = root.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dropin = root.dropin("a.service");
    let digest = skeleton_of(&dropin);
    assert_eq!(
        host_lines(&dropin),
        [
            format!("Requires=nix-confinement-host@{digest}.service"),
            format!("After=nix-confinement-host@{digest}.service"),
            format!("AssertPathIsMountPoint=/run/nix-confinement-host/{digest}"),
            format!("BindReadOnlyPaths=/run/nix-confinement-host/{digest}/etc:/etc"),
            "BindReadOnlyPaths=-/etc/group:/etc/group".to_owned(),
            "BindReadOnlyPaths=-/etc/hosts:/etc/hosts".to_owned(),
            "BindReadOnlyPaths=-/etc/nsswitch.conf:/etc/nsswitch.conf".to_owned(),
            "BindReadOnlyPaths=-/etc/passwd:/etc/passwd".to_owned(),
            "BindReadOnlyPaths=-/etc/ssl/certs:/etc/ssl/certs".to_owned(),
            "BindReadOnlyPaths=-/etc/timezone:/etc/timezone".to_owned(),
            "BindReadOnlyPaths=-/run/systemd/resolve:/run/systemd/resolve".to_owned(),
            "BindReadOnlyPaths=-/usr/share/ca-certificates:/usr/share/ca-certificates".to_owned(),
            "BindReadOnlyPaths=-/usr/share/zoneinfo:/usr/share/zoneinfo".to_owned(),
            "InaccessiblePaths=-+/run/systemd/resolve/io.systemd.Resolve".to_owned(),
            "InaccessiblePaths=-+/run/systemd/resolve/io.systemd.Resolve.Monitor".to_owned(),
            "InaccessiblePaths=-+/run/systemd/resolve/other.socket".to_owned(),
        ]
    );
    // The record of the links, beside the template that mounts them.
    let record =
        std::fs::read_to_string(root.out.join(format!(".nix-confinement-host-{digest}"))).unwrap();
    assert_eq!(
        record,
        "nix-confinement-generator host links 1\nunit a.service\n\
         /etc/localtime\t/usr/share/zoneinfo/Europe/Berlin\n\
         /etc/resolv.conf\t../run/systemd/resolve/stub-resolv.conf\n"
    );
    let template = std::fs::read_to_string(root.out.join("nix-confinement-host@.service")).unwrap();
    assert!(
        template.contains(&format!(
            "ExecStart={} host start %i {}\n",
            support::GENERATOR,
            root.out.display()
        )),
        "{template}"
    );
    assert!(template.contains(&format!("ExecStop={} host stop %i\n", support::GENERATOR)));
    // No secret, no store path of the host's: the closure is the program's.
    assert!(!dropin.contains("shadow") && !dropin.contains("private"));
    assert_eq!(
        root.binds(&dropin).first().map(String::as_str),
        Some(app.as_str())
    );
    assert_eq!(root.verify("a.service"), "");
}

#[test]
fn a_missing_resolver_directory_is_bound_when_it_appears_and_warns_nothing() {
    // At boot the generator runs before systemd-resolved made its files.
    let root = TestRoot::new("host-boot");
    root.symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        "/etc/resolv.conf",
    );
    root.symlink("/run/NetworkManager/resolv.conf", "/etc/resolv.nm");
    let app = program(&root, 2, "app");
    unit_with(&root, &app, "/etc/resolv.conf /etc/resolv.nm");
    let run = root.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let dropin = root.dropin("a.service");
    let lines = host_lines(&dropin);
    assert!(lines.contains(&"BindReadOnlyPaths=-/run/systemd/resolve:/run/systemd/resolve"));
    assert!(lines.contains(
        &"BindReadOnlyPaths=-/run/NetworkManager/resolv.conf:/run/NetworkManager/resolv.conf"
    ));
    assert_eq!(root.verify("a.service"), "");
}

/// NixOS: `/etc/hosts -> /etc/static/hosts`, `/etc/static` a link into the
/// store's `etc`: inside, `/etc/hosts` links straight to its store path,
/// which joins the closure with its own closure; the whole `etc` of the
/// system does not.
#[test]
fn nixos_links_through_etc_static_put_their_store_path_in_the_closure() {
    let root = TestRoot::new("host-nixos");
    root.write("/etc/NIXOS", "");
    let app = program(&root, 3, "app");
    let lib = store_path(4, "hosts-lib");
    let hosts = store_path(5, "hosts");
    let bundle = store_path(6, "ca-bundle.crt");
    let etc = store_path(7, "etc");
    root.write(&hosts, "127.0.0.1 localhost\n");
    root.write(&bundle, "-----BEGIN");
    root.symlink(&hosts, &format!("{etc}/etc/hosts"));
    root.symlink(&bundle, &format!("{etc}/etc/ssl/certs/ca-certificates.crt"));
    root.register(&[
        (&lib, &[]),
        (&hosts, &[&lib]),
        (&bundle, &[]),
        (&etc, &[&hosts, &bundle]),
    ]);
    root.symlink(&format!("{etc}/etc"), "/etc/static");
    root.symlink("/etc/static/hosts", "/etc/hosts");
    root.symlink(
        "/etc/static/ssl/certs/ca-certificates.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    );
    unit_with(&root, &app, "/etc/hosts @tls");
    let run = root.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dropin = root.dropin("a.service");
    let digest = skeleton_of(&dropin);
    let record =
        std::fs::read_to_string(root.out.join(format!(".nix-confinement-host-{digest}"))).unwrap();
    assert_eq!(
        record,
        format!(
            "nix-confinement-generator host links 1\nunit a.service\n\
             /etc/hosts\t{hosts}\n/etc/ssl/certs/ca-certificates.crt\t{bundle}\n"
        )
    );
    let mut closure = root.binds(&dropin);
    closure.retain(|p| p.starts_with("/nix/store/"));
    assert_eq!(closure, root.requisites(&[&app, &hosts, &bundle]));
    assert!(!closure.contains(&etc), "the system's etc is not shown");
    assert!(host_lines(&dropin).contains(
        &format!("BindReadOnlyPaths=/run/nix-confinement-host/{digest}/etc:/etc").as_str()
    ));
    // explain says why each is there, and what named the store paths.
    let explained = root.run(&["explain", "a.service"]);
    assert_eq!(explained.status, 0, "{}", explained.stderr);
    assert!(
        explained.stdout.contains(&format!(
            "/etc/hosts\n    link to {hosts} (in the closure); listed as /etc/hosts at /etc/systemd/system/a.service:4\n"
        )),
        "{}",
        explained.stdout
    );
    assert!(
        explained.stdout.contains(&format!(
            "{hosts}\n    root {hosts} named by X-ConfinementHostPaths= at /etc/systemd/system/a.service:4 (\"/etc/hosts\")\n"
        )),
        "{}",
        explained.stdout
    );
    assert_eq!(root.verify("a.service"), "");
}

#[test]
fn a_link_in_the_root_directory_is_followed() {
    let root = TestRoot::new("host-usrmerge");
    root.symlink("usr/lib", "/lib");
    root.write("/usr/lib/os-release", "ID=debian\n");
    let app = program(&root, 8, "app");
    unit_with(&root, &app, "/lib/os-release");
    assert_eq!(root.generate().status, 0);
    let dropin = root.dropin("a.service");
    assert_eq!(
        host_lines(&dropin),
        ["BindReadOnlyPaths=-/usr/lib/os-release:/lib/os-release"]
    );
    assert_eq!(root.verify("a.service"), "");
}

#[test]
fn secrets_api_file_systems_and_the_store_block_the_unit() {
    let root = TestRoot::new("host-refused");
    debian_host(&root);
    root.symlink("/etc/shadow", "/etc/innocent");
    root.symlink("../proc/self/mounts", "/etc/mtab");
    root.write("/etc/private.conf", "key=1\n");
    chmod(&root, "/etc/private.conf", 0o600);
    root.write("/etc/ssh/ssh_host_ed25519_key", "k");
    let app = program(&root, 9, "app");
    for (listed, reason) in [
        ("/etc/shadow", "/etc/shadow is a secret"),
        (
            "/etc/innocent",
            "it leads to /etc/shadow: /etc/shadow is never shown",
        ),
        ("/etc", "/etc holds the secret /etc/shadow"),
        ("/etc/ssh", "/etc/ssh holds the SSH host keys"),
        ("/etc/ssh/ssh_host_ed25519_key", "is an SSH key"),
        ("/etc/ssl/private/host.key", "/etc/ssl/private"),
        (
            "/proc/cpuinfo",
            "/proc/cpuinfo is in /proc, which is never shown",
        ),
        ("/etc/mtab", "it leads to /proc: /proc is never shown"),
        ("/run", "/run holds /run/confinement"),
        (
            "/nix/store",
            "is in the Nix store: name store paths in X-ConfinementPackages=",
        ),
        (
            "/etc/private.conf",
            "/etc/private.conf is not readable by everyone (mode 0600)",
        ),
        ("/", "/ would show the whole host"),
    ] {
        unit_with(&root, &app, listed);
        let run = root.generate();
        assert_eq!(run.status, 1, "{listed}: {}", run.stderr);
        let dropin = root.dropin("a.service");
        let description = dropin
            .lines()
            .find(|l| l.starts_with("Description=BLOCKED"))
            .unwrap_or_else(|| panic!("{listed}: not blocked: {dropin}"));
        assert!(
            description
                .contains("/etc/systemd/system/a.service:4: a.service: X-ConfinementHostPaths: ")
                && description.contains(reason),
            "{listed}: {description}"
        );
        assert_eq!(root.verify("a.service"), "", "{listed}");
    }
    for (listed, message) in [
        (
            "etc/passwd",
            "\"etc/passwd\" is neither an absolute path nor a set (@name)",
        ),
        (
            "@secrets",
            "\"@secrets\" is not a set of host paths (one of @resolve, @tls, @timezone, @users)",
        ),
        (
            "/etc/../etc/shadow",
            "\"/etc/../etc/shadow\" has a . or .. component: name the path as it is on the host",
        ),
    ] {
        unit_with(&root, &app, listed);
        let run = root.run(&["check"]);
        assert_eq!(run.status, 1, "{listed}: {}", run.stdout);
        assert!(
            run.stdout.contains(&format!(
                "/etc/systemd/system/a.service:4: a.service: X-ConfinementHostPaths: {message}"
            )),
            "{listed}: {}",
            run.stdout
        );
    }
}

#[test]
fn a_missing_path_is_a_warning_that_check_lists() {
    let root = TestRoot::new("host-missing");
    debian_host(&root);
    root.symlink("/etc/nowhere/file", "/etc/dangling");
    let app = program(&root, 10, "app");
    unit_with(&root, &app, "/etc/passwd /etc/nope /etc/dangling @tls");
    let run = root.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dropin = root.dropin("a.service");
    assert!(dropin.contains("BindReadOnlyPaths=-/etc/passwd:/etc/passwd\n"));
    assert!(!dropin.contains("/etc/nope") && !dropin.contains("/etc/dangling"));
    for message in [
        "/etc/systemd/system/a.service:4: a.service: warning: X-ConfinementHostPaths: /etc/nope does not exist on this host: not visible inside until a daemon-reload finds it",
        "/etc/systemd/system/a.service:4: a.service: warning: X-ConfinementHostPaths: /etc/dangling does not exist on this host (/etc/nowhere is missing): not visible inside until a daemon-reload finds it",
    ] {
        assert!(run.stderr.contains(message), "{message}\n{}", run.stderr);
        let check = root.run(&["check"]);
        assert_eq!(check.status, 0, "{}", check.stdout);
        assert!(check.stdout.contains(message), "{}", check.stdout);
        assert!(
            check.stdout.contains("    X-ConfinementHostPaths=/etc/passwd /etc/nope /etc/dangling @tls  (/etc/systemd/system/a.service:4)"),
            "{}",
            check.stdout
        );
    }
    // A set whose members are all missing says so.
    let bare = TestRoot::new("host-bare");
    let app = program(&bare, 11, "app");
    unit_with(&bare, &app, "@timezone");
    let run = bare.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("X-ConfinementHostPaths: @timezone: none of /etc/localtime /etc/timezone /etc/zoneinfo /usr/share/zoneinfo exists on this host: nothing is shown"),
        "{}",
        run.stderr
    );
}

#[test]
fn host_paths_bind_the_same_way_when_each_store_path_is_bound() {
    let root = TestRoot::new("host-per-path");
    root.bind_each_path();
    debian_host(&root);
    let app = program(&root, 12, "app");
    unit_with(&root, &app, "@resolve @timezone");
    assert_eq!(root.generate().status, 0);
    let dropin = root.dropin("a.service");
    let digest = skeleton_of(&dropin);
    assert!(dropin.contains("TemporaryFileSystem=/nix/store:ro\n"));
    assert!(dropin.contains(&format!(
        "BindReadOnlyPaths=/run/nix-confinement-host/{digest}/etc:/etc\n"
    )));
    assert!(dropin.contains("BindReadOnlyPaths=-/run/systemd/resolve:/run/systemd/resolve\n"));
    assert_eq!(root.verify("a.service"), "");
}

#[test]
fn an_unset_or_reset_key_adds_nothing() {
    let root = TestRoot::new("host-reset");
    debian_host(&root);
    let app = program(&root, 13, "app");
    root.unit(
        "a.service",
        &format!(
            "[Service]\nExecStart={app}/bin/app\nX-ConfinementEnable=yes\n\
             X-ConfinementHostPaths=@users\nX-ConfinementHostPaths=\n"
        ),
    );
    assert_eq!(root.generate().status, 0);
    let dropin = root.dropin("a.service");
    assert_eq!(host_lines(&dropin), Vec::<&str>::new());
    assert!(!root.out.join("nix-confinement-host@.service").exists());
}

/// Fedora: `/etc/ssl/certs` a link to `/etc/pki/tls/certs`, whose bundle
/// and `/etc/pki/tls/cert.pem` link into `/etc/pki/ca-trust/extracted`;
/// `/etc/pki/tls/private` beside them stays out.
#[test]
fn fedora_tls_links_are_reproduced_and_their_targets_bound() {
    let root = TestRoot::new("host-fedora");
    root.write(
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "-----BEGIN",
    );
    root.symlink(
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/pki/tls/certs/ca-bundle.crt",
    );
    root.symlink(
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/pki/tls/cert.pem",
    );
    root.write("/etc/pki/tls/private/host.key", "secret");
    root.symlink("/etc/pki/tls/certs", "/etc/ssl/certs");
    root.symlink("/etc/pki/tls/cert.pem", "/etc/ssl/cert.pem");
    let app = program(&root, 14, "app");
    unit_with(&root, &app, "@tls");
    let run = root.generate();
    assert_eq!(run.status, 0, "{}", run.stderr);
    let dropin = root.dropin("a.service");
    let digest = skeleton_of(&dropin);
    assert_eq!(
        host_lines(&dropin),
        [
            format!("Requires=nix-confinement-host@{digest}.service"),
            format!("After=nix-confinement-host@{digest}.service"),
            format!("AssertPathIsMountPoint=/run/nix-confinement-host/{digest}"),
            format!(
                "BindReadOnlyPaths=/run/nix-confinement-host/{digest}/etc/pki/tls:/etc/pki/tls"
            ),
            format!("BindReadOnlyPaths=/run/nix-confinement-host/{digest}/etc/ssl:/etc/ssl"),
            "BindReadOnlyPaths=-/etc/pki/ca-trust/extracted:/etc/pki/ca-trust/extracted".to_owned(),
            "BindReadOnlyPaths=-/etc/pki/tls/certs:/etc/pki/tls/certs".to_owned(),
        ]
    );
    let record =
        std::fs::read_to_string(root.out.join(format!(".nix-confinement-host-{digest}"))).unwrap();
    assert_eq!(
        record,
        "nix-confinement-generator host links 1\nunit a.service\n\
         /etc/pki/tls/cert.pem\t/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem\n\
         /etc/ssl/cert.pem\t/etc/pki/tls/cert.pem\n\
         /etc/ssl/certs\t/etc/pki/tls/certs\n"
    );
    assert!(!dropin.contains("private"));
    assert_eq!(root.verify("a.service"), "");
}
