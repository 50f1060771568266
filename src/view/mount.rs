//! Mounting and unmounting a closure view (as root, from the unit that a
//! confined service requires).
//!
//! The layer is built on a tmpfs of its own, mounted at a staging directory
//! only while it is built: overlayfs keeps a private clone of each layer's
//! mount, so once the view is mounted the staging mount is detached and
//! its directory removed. The layer then lives exactly as long as some
//! mount of the view does — the host's, or the copy in a running service's
//! mount namespace after the host's was unmounted — and the kernel frees
//! it with the last one. Nothing is left to clean up.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;

use super::closure_list::{ClosureList, Digest};
use super::layer::{self, Built};

/// What went wrong with a view: the path involved and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for ViewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for ViewError {}

fn error(path: &Path, message: impl Into<String>) -> ViewError {
    ViewError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The options of a view's overlayfs: read-only (it has no upper layer),
/// the layer over the store directory, redirects and metacopy followed.
pub fn overlay_options(layer: &Path, store: &Path) -> Result<String, ViewError> {
    for path in [layer, store] {
        let text = path.to_str().ok_or_else(|| error(path, "not UTF-8"))?;
        // Separators of the option string and of the layer list.
        if text.contains([',', ':', '\\']) {
            return Err(error(
                path,
                "contains ',', ':' or '\\', which overlayfs reads as separators",
            ));
        }
    }
    Ok(format!(
        "lowerdir={}:{},redirect_dir=follow,metacopy=on",
        layer.display(),
        store.display()
    ))
}

/// Mounts the view of `list` at `target` (made when missing), from the
/// store directory `store`, staging its layer at `staging` (a directory
/// that must not exist; removed again). Paths are on this machine.
pub fn mount_view(
    list: &ClosureList,
    store: &Path,
    staging: &Path,
    target: &Path,
) -> Result<Built, ViewError> {
    // Mounted where it is named, never through a link: mount(2) follows
    // one, and the view would cover whatever it points to.
    for path in [target.parent(), Some(target)].into_iter().flatten() {
        if let Ok(found) = std::fs::symlink_metadata(path)
            && !found.is_dir()
        {
            return Err(error(
                path,
                "not a directory: a view is not mounted on a link or a file",
            ));
        }
    }
    std::fs::create_dir(staging).map_err(|e| error(staging, e.to_string()))?;
    let result = mount_staged(list, store, staging, target);
    // Detached whether the view was mounted or not: the view holds its own
    // clone of the layer's mount.
    let _ = umount2(staging, MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(staging);
    result
}

fn mount_staged(
    list: &ClosureList,
    store: &Path,
    staging: &Path,
    target: &Path,
) -> Result<Built, ViewError> {
    mount(
        Some("nix-confinement-layer"),
        staging,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|e| error(staging, format!("mounting the layer's tmpfs: {}", e.desc())))?;
    // Nothing mounted here may travel to other namespaces, nor theirs here.
    mount(
        None::<&str>,
        staging,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| {
        error(
            staging,
            format!("making the layer's mount private: {}", e.desc()),
        )
    })?;
    let open_directory = |path: &Path| {
        open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| error(path, e.desc()))
    };
    let layer_dir = open_directory(staging)?;
    let store_dir = open_directory(store)?;
    let names: Vec<&str> = list.names.iter().map(String::as_str).collect();
    let built = layer::build(layer_dir.as_fd(), store_dir.as_fd(), &names)
        .map_err(|e| error(&store.join(&e.name), e.message))?;
    let options = overlay_options(staging, store)?;
    std::fs::create_dir_all(target).map_err(|e| error(target, e.to_string()))?;
    mount(
        Some("nix-confinement-view"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| {
        error(
            target,
            format!("mounting the overlay ({options}): {}", e.desc()),
        )
    })?;
    // Mounted below a shared /run, the view would be shared too, and the
    // bind of it in each service a slave of it: whatever is mounted later
    // below the view (or on a peer of it) would appear in running services,
    // writable if it is. A private view receives nothing.
    if let Err(e) = mount(
        None::<&str>,
        target,
        None::<&str>,
        MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        let _ = umount2(target, MntFlags::MNT_DETACH);
        return Err(error(
            target,
            format!("making the view private: {}", e.desc()),
        ));
    }
    Ok(built)
}

/// Unmounts the view at `target` (the host's mount: running services keep
/// theirs) and removes its directory. A view that is not mounted is no
/// error.
pub fn unmount_view(target: &Path) -> Result<(), ViewError> {
    match umount2(target, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(error(target, format!("unmounting: {}", e.desc()))),
    }
    // Only the view's own directory is removed (a link in its place is
    // not ours to remove, and was never mounted through).
    if std::fs::symlink_metadata(target).is_ok_and(|found| !found.is_dir()) {
        return Ok(());
    }
    match std::fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(error(target, e.to_string())),
    }
}

/// Where a view is mounted: `<views dir>/<digest>`.
pub fn view_path(views_dir: &Path, digest: Digest) -> PathBuf {
    views_dir.join(digest.to_string())
}
