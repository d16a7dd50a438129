//! Sizes as people write them on command lines and in scenarios: `512MiB`, `1GiB`, `64KiB`,
//! `1.5GB`, `1000` (bytes).

/// Parses a byte size: a number (integer or decimal) and an optional unit, `B`, `KB`/`MB`/
/// `GB`/`TB` (powers of 1000) or `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), case-insensitive,
/// spaces allowed between them. Fractions of a byte are rounded down.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let expected = || format!("expected a size such as \"512MiB\" or \"1GiB\", found {text:?}");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: f64 = number.parse().map_err(|_| expected())?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(expected()),
    };
    let bytes = number * multiplier;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(expected());
    }
    Ok(bytes as u64)
}

/// Bytes in MiB, rounded to a tenth (as the summary carries memory and temp-dir sizes).
pub fn mib(bytes: f64) -> f64 {
    (bytes / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

/// `536870912` → `512.0 MiB`.
pub fn format_byte_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `×96` for a time scale (at most three decimals).
pub fn format_time_scale(scale: f64) -> String {
    format!("×{}", (scale * 1000.0).round() / 1000.0)
}

/// A duration the way the file spells them: `300ms`, `1.5s`, `2m18s`, `1h30m`, `72h`.
pub fn format_duration(duration: std::time::Duration) -> String {
    use std::fmt::Write as _;
    use std::time::Duration;
    if duration.is_zero() {
        return "0s".to_owned();
    }
    if duration < Duration::from_millis(1) {
        return format!("{}us", duration.as_micros());
    }
    let millis = duration.as_millis();
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let (hours, minutes) = (millis / 3_600_000, millis / 60_000 % 60);
    let (seconds, fraction) = (millis / 1000 % 60, millis % 1000);
    let mut text = String::new();
    if hours > 0 {
        let _ = write!(text, "{hours}h");
    }
    if minutes > 0 {
        let _ = write!(text, "{minutes}m");
    }
    if seconds > 0 || fraction > 0 {
        let _ = write!(text, "{seconds}");
        if fraction > 0 {
            let digits = format!("{fraction:03}");
            let _ = write!(text, ".{}", digits.trim_end_matches('0'));
        }
        text.push('s');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_binary_and_decimal_units() {
        assert_eq!(parse_byte_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_byte_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_byte_size("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(parse_byte_size("64kib"), Ok(64 << 10));
        assert_eq!(parse_byte_size("1000"), Ok(1000));
    }

    #[test]
    fn bad_sizes_say_what_was_expected() {
        for bad in ["", "MiB", "-5MiB", "5 parsecs", "1e3"] {
            let error = parse_byte_size(bad).unwrap_err();
            assert!(error.contains("expected a size"), "{bad}: {error}");
        }
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format_byte_size(512), "512 B");
        assert_eq!(format_byte_size(512 << 20), "512.0 MiB");
        assert_eq!(format_byte_size(3 << 29), "1.5 GiB");
    }
}
