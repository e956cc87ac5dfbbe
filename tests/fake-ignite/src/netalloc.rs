//! VM address allocation. Real ignite's CNI (host-local IPAM on
//! 10.61.0.0/16, gateway .1) gives the first VM .2; the fake hands out the
//! lowest free address of the loopback range 127.61.0.0/16, from 127.61.0.2.

use std::net::Ipv4Addr;

/// First host number handed out (`127.61.0.2`).
const FIRST_HOST: u32 = 2;
/// Last host number handed out (`127.61.255.254`).
const LAST_HOST: u32 = 0xfffe;
/// The network, 127.61.0.0.
const NETWORK: u32 = (127 << 24) | (61 << 16);

/// The lowest address in 127.61.0.0/16 from .2 up that is not in `used`.
pub fn allocate(used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    (FIRST_HOST..=LAST_HOST)
        .map(|host| Ipv4Addr::from(NETWORK | host))
        .find(|ip| !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_lowest_free_loopback_address() {
        assert_eq!(allocate(&[]), Some(Ipv4Addr::new(127, 61, 0, 2)));
        let used = [Ipv4Addr::new(127, 61, 0, 2), Ipv4Addr::new(127, 61, 0, 4)];
        assert_eq!(allocate(&used), Some(Ipv4Addr::new(127, 61, 0, 3)));
        let full: Vec<Ipv4Addr> = (2..=255).map(|n| Ipv4Addr::new(127, 61, 0, n)).collect();
        assert_eq!(allocate(&full), Some(Ipv4Addr::new(127, 61, 1, 0)));
    }
}
