//! Closure views: one read-only overlayfs per closure, bound at the store's
//! place in each confined service that has that closure. The generator
//! records each confined unit's closure in `<[Generator] Views=>/<digest>`;
//! the unit requires `nix-confinement-view@<digest>.service`, which runs
//! `view start <digest>` to mount the view at [`VIEWS`]`/<digest>`. Units
//! with the same closure share one view; it goes when no unit needs it any
//! more (`view stop`). See nix-confinement-generator(8).

pub mod closure_list;
pub mod layer;
pub mod mount;
pub mod record;
pub mod record_writer;

use crate::config;
use crate::diag::counted;
use crate::rootfs::Root;
use crate::scratch::ScratchDir;
use camino::Utf8Path;
use closure_list::{ClosureList, Digest};
use mount::ViewError;

/// Where views are mounted.
pub const VIEWS: &str = "/run/nix-confinement-views";

/// `view start DIGEST` or `view stop DIGEST`; returns the exit status.
/// Messages go to standard error, which systemd puts in the view unit's
/// journal.
pub fn run(root: &Root, start: bool, digest: &str) -> i32 {
    let Some(digest) = Digest::parse(digest) else {
        eprintln!("nix-confinement-generator: view: {digest:?} is not a view's digest");
        return 2;
    };
    let target = mount::view_path(root.join(Utf8Path::new(VIEWS)).as_std_path(), digest);
    let result = if start {
        start_view(root, digest, &target)
    } else {
        mount::unmount_view(&target)
            .map(|()| format!("{}: unmounted", target.display()))
            .map_err(Into::into)
    };
    match result {
        Ok(done) => {
            eprintln!("nix-confinement-generator: view {digest}: {done}");
            0
        }
        Err(error) => {
            eprintln!("nix-confinement-generator: view {digest}: {error}");
            1
        }
    }
}

fn start_view(
    root: &Root,
    digest: Digest,
    target: &std::path::Path,
) -> Result<String, Box<dyn std::error::Error>> {
    let (config, errors) = config::load(root);
    if let Some(error) = errors.first() {
        return Err(error.to_string().into());
    }
    // The records are where the generator wrote them: `[Generator] Views=`.
    let Some(lists_path) = config.views.as_deref() else {
        return Err("closure views are off ([Generator] Views= is empty)".into());
    };
    // What a record names becomes visible to confined services, and the
    // layer is staged beside the records: only a directory of ours that no
    // one else can write is used.
    let lists = ScratchDir::find(root, lists_path)?
        .ok_or_else(|| format!("{lists_path}: no such directory (no closure was recorded)"))?;
    let name = digest.to_string();
    let shown = lists.path().join(&name);
    let refused = |message: String| ViewError {
        path: shown.clone().into(),
        message,
    };
    let text = read_private_file(&lists, &name)?;
    let list = ClosureList::decode(&text).map_err(|e| refused(e.to_string()))?;
    if list.digest() != digest {
        return Err(refused("its content does not have the digest it is named by".into()).into());
    }
    if list.store_dir != config.store_dir.as_str() {
        return Err(refused(format!(
            "made for the store {}, not {}",
            list.store_dir,
            config.store_dir.as_str()
        ))
        .into());
    }
    let store = root.join(Utf8Path::new(config.store_dir.as_str()));
    let staging = root
        .join(lists.path())
        .join(format!(".layer-{digest}-{}", std::process::id()));
    let built = mount::mount_view(&list, store.as_std_path(), staging.as_std_path(), target)?;
    Ok(format!(
        "mounted at {} ({}, {}, {})",
        target.display(),
        counted(built.directories, "directory", "directories"),
        counted(built.files, "file", "files"),
        counted(built.symlinks, "symlink", "symlinks")
    ))
}

/// The text of the file `name` in `dir`, when it is a regular file of ours
/// that no one else can write (what it names becomes visible to confined
/// services). Opened through the directory's descriptor, never through a
/// link.
fn read_private_file(dir: &ScratchDir, name: &str) -> Result<String, ViewError> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let error = |message: String| ViewError {
        path: dir.path().join(name).into(),
        message,
    };
    let fd = nix::fcntl::openat(
        dir.fd(),
        name,
        nix::fcntl::OFlag::O_RDONLY
            | nix::fcntl::OFlag::O_NOFOLLOW
            | nix::fcntl::OFlag::O_NONBLOCK
            | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| error(e.desc().to_owned()))?;
    let mut file = std::fs::File::from(fd);
    let metadata = file.metadata().map_err(|e| error(e.to_string()))?;
    if !metadata.is_file()
        || metadata.uid() != nix::unistd::geteuid().as_raw()
        || metadata.mode() & 0o022 != 0
    {
        return Err(error(
            "not a regular file of ours that no one else can write".to_owned(),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| error(e.to_string()))?;
    Ok(text)
}
