//! Currencies, exact amounts and the rounding rule of a contract.
//!
//! Money is never a float: every amount is a [`Decimal`] in a known
//! currency, rounded per line to the currency's minor unit by the rule the
//! contract names, so both parties get the same cents.

use rust_decimal::{Decimal, RoundingStrategy};

/// An ISO 4217 currency and the number of digits of its minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    pub code: &'static str,
    pub minor_digits: u32,
}

/// ISO 4217 codes with a minor unit other than two digits.
const MINOR_DIGITS_NOT_TWO: &[(&str, u32)] = &[
    ("BHD", 3),
    ("BIF", 0),
    ("CLF", 4),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("PYG", 0),
    ("RWF", 0),
    ("TND", 3),
    ("UGX", 0),
    ("UYI", 0),
    ("UYW", 4),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
];

/// Active ISO 4217 codes with a two-digit minor unit.
const MINOR_DIGITS_TWO: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR",
    "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF",
    "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR", "KPW", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
    "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP",
    "TRY", "TTD", "TWD", "TZS", "UAH", "USD", "UYU", "UZS", "VES", "WST", "XCD", "YER", "ZAR",
    "ZMW", "ZWG",
];

impl Currency {
    /// Looks a code up in the ISO 4217 table; `None` for anything else.
    pub fn from_code(code: &str) -> Option<Currency> {
        if let Some((code, digits)) = MINOR_DIGITS_NOT_TWO.iter().find(|(c, _)| *c == code) {
            return Some(Currency {
                code,
                minor_digits: *digits,
            });
        }
        MINOR_DIGITS_TWO
            .iter()
            .find(|c| **c == code)
            .map(|code| Currency {
                code,
                minor_digits: 2,
            })
    }

    /// An amount with exactly the currency's minor digits (and zero never
    /// negative), so that equal amounts always print as equal bytes: what
    /// a statement line holds.
    pub fn amount(&self, amount: Decimal) -> Decimal {
        let mut a = amount;
        a.rescale(self.minor_digits);
        if a.is_zero() {
            a.set_sign_positive(true);
        }
        a
    }

    /// Whether `amount` needs no rounding in this currency.
    pub fn is_exact(&self, amount: Decimal) -> bool {
        amount.normalize().scale() <= self.minor_digits
    }
}

/// How a line amount is brought to the currency's minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rounding {
    /// Banker's rounding: halves go to the even digit. The default, because
    /// it does not drift upward over many lines.
    #[default]
    HalfEven,
    /// Halves go away from zero, as most people round by hand.
    HalfUp,
    /// Toward zero: the payer never pays a fraction of a cent more.
    Down,
    /// Away from zero.
    Up,
}

impl Rounding {
    pub fn parse(text: &str) -> Option<Rounding> {
        Some(match text {
            "half_even" => Rounding::HalfEven,
            "half_up" => Rounding::HalfUp,
            "down" => Rounding::Down,
            "up" => Rounding::Up,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Rounding::HalfEven => "half_even",
            Rounding::HalfUp => "half_up",
            Rounding::Down => "down",
            Rounding::Up => "up",
        }
    }

    /// Rounds `amount` to `currency`'s minor unit.
    pub fn round(&self, amount: Decimal, currency: Currency) -> Decimal {
        let strategy = match self {
            Rounding::HalfEven => RoundingStrategy::MidpointNearestEven,
            Rounding::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            Rounding::Down => RoundingStrategy::ToZero,
            Rounding::Up => RoundingStrategy::AwayFromZero,
        };
        amount.round_dp_with_strategy(currency.minor_digits, strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn minor_units_come_from_the_iso_table() {
        assert_eq!(Currency::from_code("USD").unwrap().minor_digits, 2);
        assert_eq!(Currency::from_code("JPY").unwrap().minor_digits, 0);
        assert_eq!(Currency::from_code("KWD").unwrap().minor_digits, 3);
        assert!(Currency::from_code("usd").is_none());
        assert!(Currency::from_code("XYZ").is_none());
    }

    #[test]
    fn each_rule_rounds_halves_and_non_halves_its_way() {
        let usd = Currency::from_code("USD").unwrap();
        let cases = [
            ("0.125", "0.12", "0.13", "0.12", "0.13"),
            ("0.135", "0.14", "0.14", "0.13", "0.14"),
            ("-0.125", "-0.12", "-0.13", "-0.12", "-0.13"),
            ("2.001", "2.00", "2.00", "2.00", "2.01"),
            ("2.50", "2.50", "2.50", "2.50", "2.50"),
        ];
        for (input, even, up, down, away) in cases {
            for (rule, want) in [
                (Rounding::HalfEven, even),
                (Rounding::HalfUp, up),
                (Rounding::Down, down),
                (Rounding::Up, away),
            ] {
                assert_eq!(rule.round(d(input), usd), d(want), "{input} {rule:?}");
            }
        }
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(Rounding::HalfEven.round(d("2.5"), jpy), d("2"));
        assert_eq!(jpy.amount(d("2")).to_string(), "2");
    }

    #[test]
    fn format_always_shows_the_minor_digits() {
        let usd = Currency::from_code("USD").unwrap();
        assert_eq!(usd.amount(d("5")).to_string(), "5.00");
        assert_eq!(usd.amount(d("-0.00")).to_string(), "0.00");
        assert_eq!(usd.amount(d("1.10")).to_string(), "1.10");
        let kwd = Currency::from_code("KWD").unwrap();
        assert_eq!(kwd.amount(d("1.5")).to_string(), "1.500");
        assert!(usd.is_exact(d("1.2000")));
        assert!(!usd.is_exact(d("1.234")));
    }
}
