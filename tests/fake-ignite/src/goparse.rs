//! Go standard-library parsers whose exact acceptance and error texts ignite
//! inherits: `strconv.ParseUint` (pflag's `uint`/`uint32` flags, docker's
//! port numbers) and `net.ParseIP`/`net.SplitHostPort` (docker's port specs),
//! as in Go 1.16, which built ignite v0.10.0.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::log::go_quote;

/// `strconv.ParseUint(s, base, bit_size)` for base 0 (prefixes `0x`, `0o`,
/// `0b`, a leading `0` for octal, `_` separators) or base 10. The error is
/// `strconv.NumError`'s text, e.g.
/// `strconv.ParseUint: parsing "x": invalid syntax`.
pub fn parse_uint(text: &str, base: u32, bit_size: u32) -> Result<u64, String> {
    let syntax = || {
        format!(
            "strconv.ParseUint: parsing {}: invalid syntax",
            go_quote(text)
        )
    };
    let range = || {
        format!(
            "strconv.ParseUint: parsing {}: value out of range",
            go_quote(text)
        )
    };
    if text.is_empty() {
        return Err(syntax());
    }
    let base0 = base == 0;
    let bytes = text.as_bytes();
    let (base, digits): (u64, &[u8]) = if base0 {
        if bytes[0] == b'0' {
            match bytes.get(1).map(u8::to_ascii_lowercase) {
                Some(b'b') if bytes.len() >= 3 => (2, &bytes[2..]),
                Some(b'o') if bytes.len() >= 3 => (8, &bytes[2..]),
                Some(b'x') if bytes.len() >= 3 => (16, &bytes[2..]),
                _ => (8, &bytes[1..]),
            }
        } else {
            (10, bytes)
        }
    } else {
        (u64::from(base), bytes)
    };
    let max = if bit_size >= 64 {
        u64::MAX
    } else {
        (1u64 << bit_size) - 1
    };
    let cutoff = u64::MAX / base + 1;
    let mut value: u64 = 0;
    let mut underscores = false;
    for &byte in digits {
        let digit = match byte {
            b'_' if base0 => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u64::from(byte - b'0'),
            b'a'..=b'z' | b'A'..=b'Z' => u64::from(byte.to_ascii_lowercase() - b'a') + 10,
            _ => return Err(syntax()),
        };
        if digit >= base {
            return Err(syntax());
        }
        if value >= cutoff {
            return Err(range());
        }
        value *= base;
        match value.checked_add(digit) {
            Some(next) if next <= max => value = next,
            _ => return Err(range()),
        }
    }
    if underscores && !underscore_ok(text) {
        return Err(syntax());
    }
    Ok(value)
}

/// `strconv.underscoreOK`: underscores only between digits (or after a base
/// prefix).
fn underscore_ok(text: &str) -> bool {
    let mut bytes = text.as_bytes();
    if let Some((b'+' | b'-', rest)) = bytes.split_first() {
        bytes = rest;
    }
    let mut saw = b'^';
    let mut index = 0;
    let mut hex = false;
    if bytes.len() >= 2
        && bytes[0] == b'0'
        && matches!(bytes[1].to_ascii_lowercase(), b'b' | b'o' | b'x')
    {
        index = 2;
        saw = b'0';
        hex = bytes[1].eq_ignore_ascii_case(&b'x');
    }
    for &byte in &bytes[index..] {
        if byte.is_ascii_digit() || (hex && byte.is_ascii_hexdigit()) {
            saw = b'0';
        } else if byte == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else if saw == b'_' {
            return false;
        } else {
            saw = b'!';
        }
    }
    saw != b'_'
}

/// `net.ParseIP` (Go 1.16: decimal IPv4 octets, leading zeros allowed; IPv6
/// without zones). Returns the address as Go's `IP.String()` prints it.
pub fn parse_ip(text: &str) -> Option<String> {
    if let Some(v4) = parse_ipv4(text) {
        return Some(v4.to_string());
    }
    if !text.contains(':') || text.contains('%') {
        return None;
    }
    let v6: Ipv6Addr = text.parse().ok()?;
    Some(match v6.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => v6.to_string(),
    })
}

/// Go 1.16's `parseIPv4`: four dot-separated decimal numbers up to 255.
fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    let mut octets = [0u8; 4];
    for (octet, part) in octets.iter_mut().zip(&parts) {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let trimmed = part.trim_start_matches('0');
        if trimmed.len() > 3 {
            return None;
        }
        *octet = trimmed.parse::<u16>().unwrap_or(0).try_into().ok()?;
    }
    Some(Ipv4Addr::from(octets))
}

/// `net.SplitHostPort`: the host part, or Go's `AddrError` text
/// (`address <addr>: <why>`).
pub fn split_host_port(hostport: &str) -> Result<String, String> {
    let fail = |why: &str| Err(format!("address {hostport}: {why}"));
    let Some(last_colon) = hostport.rfind(':') else {
        return fail("missing port in address");
    };
    let (host, open, close) = if hostport.starts_with('[') {
        let Some(end) = hostport.find(']') else {
            return fail("missing ']' in address");
        };
        if end + 1 == hostport.len() {
            return fail("missing port in address");
        }
        if end + 1 != last_colon {
            if hostport.as_bytes()[end + 1] == b':' {
                return fail("too many colons in address");
            }
            return fail("missing port in address");
        }
        (&hostport[1..end], 1, end + 1)
    } else {
        let host = &hostport[..last_colon];
        if host.contains(':') {
            return fail("too many colons in address");
        }
        (host, 0, 0)
    };
    if hostport[open..].contains('[') {
        return fail("unexpected '[' in address");
    }
    if hostport[close..].contains(']') {
        return fail("unexpected ']' in address");
    }
    Ok(host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uints_like_go() {
        assert_eq!(parse_uint("42", 0, 64), Ok(42));
        assert_eq!(parse_uint("0x10", 0, 64), Ok(16));
        assert_eq!(parse_uint("010", 0, 64), Ok(8));
        assert_eq!(parse_uint("0b11", 0, 64), Ok(3));
        assert_eq!(parse_uint("1_000", 0, 64), Ok(1000));
        assert_eq!(parse_uint("0", 0, 64), Ok(0));
        for bad in ["", "+1", "-1", "x", "1_", "_1", "0x", "08", "1 "] {
            assert_eq!(
                parse_uint(bad, 0, 64),
                Err(format!(
                    "strconv.ParseUint: parsing {}: invalid syntax",
                    go_quote(bad)
                )),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_uint("4294967296", 0, 32),
            Err("strconv.ParseUint: parsing \"4294967296\": value out of range".into())
        );
        assert_eq!(parse_uint("4294967295", 0, 32), Ok(u64::from(u32::MAX)));
        assert!(parse_uint("18446744073709551616", 0, 64).is_err());
        assert_eq!(parse_uint("65535", 10, 16), Ok(65535));
        assert!(parse_uint("65536", 10, 16).is_err());
        assert!(parse_uint("1_0", 10, 64).is_err());
    }

    #[test]
    fn parses_ips_like_go_1_16() {
        assert_eq!(parse_ip("127.0.0.1").as_deref(), Some("127.0.0.1"));
        assert_eq!(parse_ip("010.1.1.1").as_deref(), Some("10.1.1.1"));
        assert_eq!(parse_ip("::1").as_deref(), Some("::1"));
        assert_eq!(parse_ip("::ffff:1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(parse_ip("256.1.1.1"), None);
        assert_eq!(parse_ip("foo"), None);
        assert_eq!(split_host_port("1.2.3.4:"), Ok("1.2.3.4".into()));
        assert_eq!(split_host_port("[::1]:"), Ok("::1".into()));
        assert_eq!(
            split_host_port("::1:"),
            Err("address ::1:: too many colons in address".into())
        );
    }
}
