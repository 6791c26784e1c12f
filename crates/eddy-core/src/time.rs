//! Parsing of durations and memory sizes as Flink writes them (`100 ms`, `1 min`, `32kb`).

use std::time::Duration;

/// Parses a duration the way Flink's `TimeUtils.parseDuration` does: a number followed by an
/// optional unit (`ns`, `us`, `ms`, `s`, `min`, `h`, `d` and their long forms); a bare number is
/// milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("'{text}' does not start with a number"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{num}' is not a valid number"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let d = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => Duration::from_millis(n),
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => Duration::from_nanos(n),
        "us" | "µs" | "micro" | "micros" | "microsecond" | "microseconds" => {
            Duration::from_micros(n)
        }
        "s" | "sec" | "secs" | "second" | "seconds" => Duration::from_secs(n),
        "m" | "min" | "mins" | "minute" | "minutes" => Duration::from_secs(n * 60),
        "h" | "hour" | "hours" => Duration::from_secs(n * 3600),
        "d" | "day" | "days" => Duration::from_secs(n * 86_400),
        other => {
            return Err(format!(
                "unknown time unit '{other}' (use ns, us, ms, s, min, h or d)"
            ));
        }
    };
    Ok(d)
}

/// Formats a duration the way Flink prints one (`100 ms`, `1 min`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !d.subsec_nanos().is_multiple_of(1_000_000) {
        return format!("{} ns", d.as_nanos());
    }
    if ms == 0 {
        return "0 ms".into();
    }
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("min", 60_000),
        ("s", 1000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{} {unit}", ms / size);
        }
    }
    format!("{ms} ms")
}

/// Parses a memory size as Flink's `MemorySize.parse`: a number and an optional unit (`b`, `kb`,
/// `mb`, `gb`, `tb`, with or without the `b`, binary multiples). A bare number is bytes.
pub fn parse_memory_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(format!("'{text}' does not start with a number"));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{num}' is not a valid number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" | "bytes" => 1,
        "k" | "kb" | "kibibytes" => 1 << 10,
        "m" | "mb" | "mebibytes" => 1 << 20,
        "g" | "gb" | "gibibytes" => 1 << 30,
        "t" | "tb" | "tebibytes" => 1 << 40,
        other => {
            return Err(format!(
                "unknown memory unit '{other}' (use b, kb, mb, gb or tb)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{text}' is too large"))
}

/// Milliseconds since the Unix epoch, from the wall clock.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("100").unwrap(), Duration::from_millis(100));
        assert_eq!(
            parse_duration("100 ms").unwrap(),
            Duration::from_millis(100)
        );
        assert_eq!(parse_duration("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_duration("2 min").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1 h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("10 lightyears").is_err());
        assert_eq!(format_duration(Duration::from_millis(100)), "100 ms");
        assert_eq!(format_duration(Duration::from_secs(60)), "1 min");
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory_size("32kb").unwrap(), 32 * 1024);
        assert_eq!(parse_memory_size("1 mb").unwrap(), 1 << 20);
        assert_eq!(parse_memory_size("7").unwrap(), 7);
        assert!(parse_memory_size("lots").is_err());
    }
}
