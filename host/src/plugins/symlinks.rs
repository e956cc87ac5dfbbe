//! Symlinks in granted directories: refused unless the plugin's grants
//! allow them.
//!
//! WASI's sandbox never follows a symlink out of a granted directory, and
//! refuses absolute link targets, but a plugin may still create a relative
//! link that climbs out (`x.conf -> ../../../etc/shadow`). The sandbox does
//! not follow it; a privileged program that reads the directory does (root
//! nginx including `*.conf`, and echoing the file in its error). So the
//! host replaces WASI's `descriptor.symlink-at` with one that answers
//! `not-permitted` unless the plugin has `grants.symlinks = true`, in which
//! case it does what WASI does.

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::WasiFilesystemView;
use wasmtime_wasi::p2::bindings::filesystem::types::{Descriptor, ErrorCode, HostDescriptor};

use super::call_state::CallState;

/// The WASI filesystem interface as wasmtime defines it; guests importing
/// an older 0.2 version are linked to it by semver.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Replaces `symlink-at` in `linker` (after WASI was added to it).
pub fn guard(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(FILESYSTEM_TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store, (fd, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                if !store.data().symlinks_allowed() {
                    tracing::warn!(
                        plugin = %store.data().plugin_name(),
                        link = %crate::redact::log_text(&link),
                        target = %crate::redact::log_text(&target),
                        "refused a plugin's symlink in a granted directory (grants.symlinks is off)"
                    );
                    return Ok((Err(ErrorCode::NotPermitted),));
                }
                let mut files = store.data_mut().filesystem();
                match HostDescriptor::symlink_at(&mut files, fd, target, link).await {
                    Ok(()) => Ok((Ok(()),)),
                    Err(error) => Ok((Err(error.downcast()?),)),
                }
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
