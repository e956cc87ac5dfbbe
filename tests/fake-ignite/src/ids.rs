//! Random identifiers: VM IDs (8 random bytes as 16 hex characters, like
//! ignite's `util.NewUID`) and 64-hex container IDs.

use std::fs::File;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

/// `bytes` random bytes as lower-case hex (from `/dev/urandom`, falling back
/// to a time-and-pid mix if it cannot be read).
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    let read = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buffer));
    if read.is_err() {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut state = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        for byte in &mut buffer {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state.to_le_bytes()[0];
        }
    }
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new VM ID: 16 hex characters.
pub fn new_vm_id() -> String {
    random_hex(8)
}

/// A new container ID: 64 hex characters.
pub fn new_container_id() -> String {
    random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_ignites_shape() {
        let id = new_vm_id();
        assert_eq!(id.len(), 16);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(new_container_id().len(), 64);
        assert_ne!(new_vm_id(), new_vm_id());
    }
}
