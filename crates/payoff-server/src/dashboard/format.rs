//! How figures read on a page: grouped digits with their unit, times in
//! UTC, durations in words. Money stays the exact decimal it is; only
//! its digits are grouped.

use chrono::{DateTime, Duration, Utc};

/// Percent-encodes a query value (everything but the unreserved bytes).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `-12345.678` → `-12,345.678`; anything that is not a plain decimal is
/// returned as it is.
pub fn grouped(number: &str) -> String {
    let (sign, rest) = match number.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", number),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (rest, None),
    };
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return number.to_owned();
    }
    let mut out = String::from(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    out
}

/// An amount with its currency: `1,234.50 USD`.
pub fn money(amount: impl std::fmt::Display, currency: &str) -> String {
    format!("{} {currency}", grouped(&amount.to_string()))
}

pub fn datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An RFC 3339 time as [`datetime`] shows it; other text unchanged.
pub fn datetime_text(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| datetime(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| text.to_owned())
}

/// `72 hours`, `30 days`, `90 minutes`.
pub fn duration(d: Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let minutes = d.num_minutes();
    if minutes % (24 * 60) == 0 && minutes >= 24 * 60 && minutes / 60 > 72 {
        plural(minutes / (24 * 60), "day")
    } else if minutes % 60 == 0 && minutes > 0 {
        plural(minutes / 60, "hour")
    } else {
        plural(minutes, "minute")
    }
}

/// The first 12 hex digits of a hash, for reading; the page keeps the
/// whole hash in the element's title.
pub fn short_hash(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// A link target only when it is a web address: `javascript:` and other
/// schemes in stored data never become clickable.
pub fn web_href(url: &str) -> Option<&str> {
    let lower = url.trim_start().to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://")).then_some(url)
}

/// A proportion as percentage points with one decimal: `0.1234` → `12.3`.
pub fn points(proportion: f64) -> String {
    format!("{:.1}", proportion * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_group_by_thousands_and_keep_their_decimals() {
        assert_eq!(grouped("1234567.50"), "1,234,567.50");
        assert_eq!(grouped("-1000"), "-1,000");
        assert_eq!(grouped("999.999"), "999.999");
        assert_eq!(grouped("n/a"), "n/a");
        assert_eq!(money("5000.00", "USD"), "5,000.00 USD");
    }

    #[test]
    fn durations_read_in_the_unit_people_use() {
        assert_eq!(duration(Duration::hours(72)), "72 hours");
        assert_eq!(duration(Duration::days(30)), "30 days");
        assert_eq!(duration(Duration::hours(1)), "1 hour");
        assert_eq!(duration(Duration::minutes(90)), "90 minutes");
    }

    #[test]
    fn only_web_addresses_become_links() {
        assert_eq!(
            web_href("https://help.acme.test/a"),
            Some("https://help.acme.test/a")
        );
        assert_eq!(web_href(" JavaScript:alert(1)"), None);
        assert_eq!(web_href("data:text/html,x"), None);
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd/%C3%A9");
    }
}
