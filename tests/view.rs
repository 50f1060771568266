//! Closure views mounted for real (`view start` and `view stop`, as the view
//! unit runs them), each in a private mount namespace (`unshare -m`): what
//! the view shows is exactly the closure, with the store's content, and
//! nothing can be written through it.

mod support;

use nix_confinement_generator::view::closure_list::ClosureList;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::{GENERATOR, TestRoot};

/// A store with a directory, a regular file and a symlink added by real
/// Nix, and one more path that no closure names.
struct Store {
    root: TestRoot,
    directory: String,
    file: String,
    symlink: String,
    other: String,
}

fn store(name: &str) -> Store {
    let root = TestRoot::new(name);
    let work = root.path("/../work");
    std::fs::create_dir_all(work.join("app/bin")).unwrap();
    std::fs::write(work.join("app/bin/app"), "#!/bin/sh\necho app\n").unwrap();
    std::fs::set_permissions(
        work.join("app/bin/app"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(work.join("config.toml"), "answer = 42\n").unwrap();
    std::fs::write(work.join("other"), "not in the closure\n").unwrap();
    let directory = root.add(&work.join("app"));
    let file = root.add(&work.join("config.toml"));
    let other = root.add(&work.join("other"));
    std::os::unix::fs::symlink(&directory, work.join("current")).unwrap();
    let symlink = root.add(&work.join("current"));
    Store {
        root,
        directory,
        file,
        symlink,
        other,
    }
}

fn record(root: &TestRoot, list: &ClosureList) -> String {
    let digest = list.digest().to_string();
    let file = root.path(&format!("/run/nix-confinement-generator/views/{digest}"));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, list.encode()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    digest
}

/// Runs `script` in a private mount namespace with `$G` the generator
/// under the test root and `$V` the view's directory: whether it succeeded,
/// its standard output and its standard error.
fn in_namespace(root: &TestRoot, digest: &str, script: &str) -> (bool, String, String) {
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("G", format!("{GENERATOR} --root {}", root.dir.display()))
        .env(
            "V",
            root.path(&format!("/run/nix-confinement-views/{digest}")),
        )
        .env("D", digest)
        .env("R", &root.dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_view_shows_exactly_the_closure_read_only() {
    let s = store("view-exact");
    let list = ClosureList::new(
        "/nix/store",
        [s.directory.as_str(), s.file.as_str(), s.symlink.as_str()],
    );
    let digest = record(&s.root, &list);
    let name = |path: &str| path.trim_start_matches("/nix/store/").to_owned();
    let script = format!(
        "set -e
        $G view start $D
        ls -A $V/s
        echo ---
        cat $V/s/{file}
        $V/s/{directory}/bin/app
        readlink $V/s/{symlink}
        stat -c '%a %s' $V/s/{file}
        if touch $V/s/{directory}/bin/new 2>/dev/null; then echo WROTE; fi
        if {{ echo x >>$V/s/{file}; }} 2>/dev/null; then echo APPENDED; fi
        if mkdir $V/s/new 2>/dev/null; then echo MADE; fi
        if mount -o remount,rw $V 2>/dev/null; then echo REMOUNTED; fi
        test ! -e $V/s/{other} && echo absent
        ls -A {lists}
        $G view stop $D
        test ! -e $V && echo stopped",
        file = name(&s.file),
        directory = name(&s.directory),
        symlink = name(&s.symlink),
        other = name(&s.other),
        lists = s
            .root
            .path("/run/nix-confinement-generator/views")
            .display(),
    );
    let (ok, stdout, stderr) = in_namespace(&s.root, &digest, &script);
    assert!(ok, "{stdout}{stderr}");
    let mut closure = [name(&s.directory), name(&s.file), name(&s.symlink)];
    closure.sort();
    let expected = format!(
        "{}\n---\nanswer = 42\napp\n{}\n444 12\nabsent\n{digest}\nstopped\n",
        closure.join("\n"),
        s.directory
    );
    assert_eq!(stdout, expected, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "nix-confinement-generator: view {digest}: mounted at"
        )),
        "{stderr}"
    );
}

#[test]
fn a_list_that_does_not_match_its_digest_or_is_not_ours_mounts_nothing() {
    let s = store("view-refused");
    let list = ClosureList::new("/nix/store", [s.file.as_str()]);
    let digest = record(&s.root, &list);
    let file = s
        .root
        .path(&format!("/run/nix-confinement-generator/views/{digest}"));
    // Another path slipped into the list.
    let mut forged = list.clone();
    forged
        .names
        .push(s.other.trim_start_matches("/nix/store/").into());
    forged.names.sort();
    std::fs::write(&file, forged.encode()).unwrap();
    let (ok, _, output) = in_namespace(&s.root, &digest, "$G view start $D; test ! -e $V/s");
    assert!(ok, "{output}");
    assert!(
        output.contains("does not have the digest it is named by"),
        "{output}"
    );
    // Writable by others.
    std::fs::write(&file, list.encode()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (ok, _, output) = in_namespace(&s.root, &digest, "$G view start $D; test ! -e $V/s");
    assert!(ok, "{output}");
    assert!(output.contains("no one else can write"), "{output}");
    // A closure path missing from the store: named, nothing mounted, no
    // staging directory left.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let gone = ClosureList::new(
        "/nix/store",
        [
            s.file.as_str(),
            "/nix/store/00000000000000000000000000000000-gone",
        ],
    );
    let digest = record(&s.root, &gone);
    let lists = s.root.path("/run/nix-confinement-generator/views");
    let (ok, listed, output) = in_namespace(
        &s.root,
        &digest,
        &format!(
            "$G view start $D; test ! -e $V/s; ls -A {}",
            lists.display()
        ),
    );
    assert!(ok, "{output}");
    assert!(
        output.contains("00000000000000000000000000000000-gone"),
        "{output}"
    );
    assert!(!listed.contains(".layer-"), "{listed}");
}

#[test]
fn records_are_read_only_from_the_configured_directory_of_ours() {
    use std::os::unix::fs::{chown, symlink};
    let s = store("view-records-dir");
    let list = ClosureList::new("/nix/store", [s.file.as_str()]);
    let digest = record(&s.root, &list);
    let lists = s.root.path(support::VIEW_RECORDS);
    let refused = |expected: &str| {
        let (ok, _, output) = in_namespace(&s.root, &digest, "$G view start $D; test ! -e $V/s");
        assert!(ok, "mounted although {expected} was expected: {output}");
        assert!(output.contains(expected), "{output}");
    };
    // Owned by another user, who could swap the records or the layer's
    // staging directory: refused, the reason named.
    chown(&lists, Some(65534), None).unwrap();
    refused("owned by uid 65534");
    // Root's, but anyone may write into it.
    chown(&lists, Some(0), None).unwrap();
    std::fs::set_permissions(&lists, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused("mode 777");
    // The record itself through a link: not followed.
    std::fs::set_permissions(&lists, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = lists.join(&digest);
    std::fs::rename(&file, lists.join("elsewhere")).unwrap();
    symlink(lists.join("elsewhere"), &file).unwrap();
    refused(&format!("{digest}: Too many symbolic links"));
    std::fs::remove_file(&file).unwrap();
    std::fs::rename(lists.join("elsewhere"), &file).unwrap();
    let (ok, _, output) = in_namespace(&s.root, &digest, "$G view start $D && test -e $V/s");
    assert!(ok, "{output}");

    // `[Generator] Views=` names another directory: the records are read
    // there, as the generator wrote them.
    s.root.write(
        "/etc/systemd/nix-confinement-generator.conf.d/views.conf",
        "[Generator]\nViews=/var/lib/ncg-views\n",
    );
    let configured = s.root.path("/var/lib/ncg-views");
    std::fs::create_dir_all(&configured).unwrap();
    std::fs::set_permissions(&configured, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::rename(&file, configured.join(&digest)).unwrap();
    let (ok, _, output) = in_namespace(&s.root, &digest, "$G view start $D && test -e $V/s");
    assert!(ok, "{output}");
    // Views off: nothing is read, and the message says why.
    s.root.write(
        "/etc/systemd/nix-confinement-generator.conf.d/views.conf",
        "[Generator]\nViews=\n",
    );
    refused("Views= is empty");
}

#[test]
fn a_view_is_private_even_below_a_shared_mount() {
    let s = store("view-private");
    let list = ClosureList::new("/nix/store", [s.directory.as_str()]);
    let digest = record(&s.root, &list);
    // The root a shared mount, as /run is under systemd; the view is
    // mounted below it, and a mount made below the view later must not
    // reach a bind of it (a running service's store).
    let script = format!(
        "set -e
        mount --bind $R $R
        mount --make-shared $R
        $G view start $D
        findmnt -n -o PROPAGATION $V
        mkdir -p $R/../bound $R/../elsewhere
        mount --bind $V/s $R/../bound
        mount -t tmpfs later $V/s/{directory}/bin
        ls -A $R/../bound/{directory}/bin",
        directory = s.directory.trim_start_matches("/nix/store/"),
    );
    let (ok, stdout, stderr) = in_namespace(&s.root, &digest, &script);
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout, "private\napp\n", "{stderr}");
}

#[test]
fn a_view_is_never_mounted_through_a_link_in_its_place() {
    let s = store("view-link");
    let list = ClosureList::new("/nix/store", [s.directory.as_str()]);
    let digest = record(&s.root, &list);
    let elsewhere = s.root.path("/elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let views = s.root.path("/run/nix-confinement-views");
    std::fs::create_dir_all(&views).unwrap();
    std::os::unix::fs::symlink(&elsewhere, views.join(&digest)).unwrap();
    let (ok, stdout, stderr) = in_namespace(
        &s.root,
        &digest,
        &format!(
            "$G view start $D && echo MOUNTED; findmnt -n {} && echo MOUNTED-ELSEWHERE; $G view stop $D; test -L $V && echo kept",
            elsewhere.display()
        ),
    );
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout, "kept\n", "{stderr}");
    assert!(
        stderr.contains("not a directory: a view is not mounted on a link or a file"),
        "{stderr}"
    );
    // The views' directory itself a link: refused too.
    std::fs::remove_file(views.join(&digest)).unwrap();
    std::fs::remove_dir(&views).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &views).unwrap();
    let (ok, stdout, stderr) =
        in_namespace(&s.root, &digest, "$G view start $D && echo MOUNTED; true");
    assert!(ok, "{stdout}{stderr}");
    assert_eq!(stdout, "", "{stderr}");
    assert!(stderr.contains("not a directory"), "{stderr}");
}
