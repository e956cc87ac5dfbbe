//! Byte sizes the way ignite handles them with `github.com/c2h5oh/datasize`:
//! parsing flag values (`512MB`, `4GB`, `2048`), the exact form stored in JSON
//! (`String()`, `512MB`) and the human form shown by `ps` (`HR()`, `512.0 MB`).

/// Kibibyte (datasize's `KB`).
const KB: u64 = 1 << 10;
/// Mebibyte.
const MB: u64 = KB << 10;
/// Gibibyte.
const GB: u64 = MB << 10;
/// Tebibyte.
const TB: u64 = GB << 10;
/// Pebibyte.
const PB: u64 = TB << 10;
/// Exbibyte.
const EB: u64 = PB << 10;

/// Units from largest to smallest, with their suffixes.
const UNITS: [(u64, &str); 6] = [
    (EB, "EB"),
    (PB, "PB"),
    (TB, "TB"),
    (GB, "GB"),
    (MB, "MB"),
    (KB, "KB"),
];

/// Parses a size like datasize's `UnmarshalText`: digits, then an optional
/// case-insensitive unit (`b`, `k`/`kb`/`kib`, … `e`); no unit means bytes,
/// and the empty string is 0 bytes (the digit loop never runs). The error
/// is Go's `strconv.NumError` text, e.g.
/// `strconv.UnmarshalText: parsing "lots": invalid syntax`.
pub fn parse(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Ok(0);
    }
    let syntax = || {
        format!(
            "strconv.UnmarshalText: parsing {}: invalid syntax",
            go_quote_plain(text)
        )
    };
    let range = || {
        format!(
            "strconv.UnmarshalText: parsing {}: value out of range",
            go_quote_plain(text)
        )
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits_end == 0 {
        return Err(syntax());
    }
    let value: u64 = text[..digits_end].parse().map_err(|_| range())?;
    let unit = text[digits_end..].trim();
    if matches!(unit, "Kb" | "Mb" | "Gb" | "Tb" | "Pb" | "Eb") {
        return Err(format!(
            "strconv.UnmarshalText: parsing {}: unit with capital unit prefix and lower case unit (b) - bits, not bytes ",
            go_quote_plain(text)
        ));
    }
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" => 1,
        "k" | "kb" | "kib" | "kilo" | "kilobyte" | "kilobytes" => KB,
        "m" | "mb" | "mib" | "mega" | "megabyte" | "megabytes" => MB,
        "g" | "gb" | "gib" | "giga" | "gigabyte" | "gigabytes" => GB,
        "t" | "tb" | "tib" | "tera" | "terabyte" | "terabytes" => TB,
        "p" | "pb" | "pib" | "peta" | "petabyte" | "petabytes" => PB,
        "e" | "eb" | "eib" | "exa" | "exabyte" | "exabytes" => EB,
        _ => return Err(syntax()),
    };
    value.checked_mul(multiplier).ok_or_else(range)
}

/// datasize `String()`: the largest unit dividing the size exactly, no space
/// (`0B`, `512MB`, `4GB`, `1536MB`, `1000B`). Used in ignite's JSON.
pub fn exact(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_string();
    }
    for (unit, suffix) in UNITS {
        if bytes.is_multiple_of(unit) {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    format!("{bytes}B")
}

/// datasize `HR()`: one decimal in the largest unit strictly smaller than the
/// size (`4.0 GB`, `512.0 MB`, `1024.0 MB` for exactly 1 GiB), else `N B`.
/// Used in `ignite ps`.
pub fn human(bytes: u64) -> String {
    for (unit, suffix) in UNITS {
        if bytes > unit {
            let whole = bytes / unit;
            let rest = bytes % unit;
            // Same value as datasize's `float64(v) + float64(r)/float64(unit)`.
            let value = whole as f64 + rest as f64 / unit as f64;
            return format!("{value:.1} {suffix}");
        }
    }
    format!("{bytes} B")
}

/// Go's `%q` for an ASCII-ish flag value (used in error messages).
fn go_quote_plain(text: &str) -> String {
    crate::log::go_quote(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_datasize() {
        assert_eq!(parse("512MB"), Ok(512 * MB));
        assert_eq!(parse("1GB"), Ok(GB));
        assert_eq!(parse("10G"), Ok(10 * GB));
        assert_eq!(parse("2048"), Ok(2048));
        assert_eq!(parse("4 gib"), Ok(4 * GB));
        assert_eq!(parse(""), Ok(0));
        assert_eq!(parse("4096MB"), Ok(4 * GB));
        assert_eq!(parse("1024mb"), Ok(GB));
        assert_eq!(parse("8EB"), Ok(1 << 63));
        assert!(parse("16EB").unwrap_err().ends_with("value out of range"));
        assert!(parse(" 5GB").unwrap_err().ends_with("invalid syntax"));
        assert!(parse("5.5GB").unwrap_err().ends_with("invalid syntax"));
        assert_eq!(
            parse("lots"),
            Err("strconv.UnmarshalText: parsing \"lots\": invalid syntax".into())
        );
        assert_eq!(
            parse("5XB"),
            Err("strconv.UnmarshalText: parsing \"5XB\": invalid syntax".into())
        );
        assert!(parse("5Gb").unwrap_err().contains("bits, not bytes"));
        assert!(
            parse("99999999999999999999")
                .unwrap_err()
                .ends_with("value out of range")
        );
    }

    #[test]
    fn renders_exact_sizes() {
        assert_eq!(exact(0), "0B");
        assert_eq!(exact(512 * MB), "512MB");
        assert_eq!(exact(4 * GB), "4GB");
        assert_eq!(exact(1536 * MB), "1536MB");
        assert_eq!(exact(1000), "1000B");
    }

    #[test]
    fn renders_human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(4 * GB), "4.0 GB");
        assert_eq!(human(512 * MB), "512.0 MB");
        assert_eq!(human(GB), "1024.0 MB");
        assert_eq!(human(3 * GB + GB / 2), "3.5 GB");
        assert_eq!(human(1024), "1024 B");
    }
}
