//! Customers: the id rule every front door checks before a customer is made.

/// Customer ids: lowercase letters, digits, `-` and `_`, 1 to 64 long,
/// so they are safe in URLs, file names and logs.
pub fn check_customer_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!("\"{id}\" is not a valid customer id: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"))
    }
}
