//! Money in integer minor units with an ISO 4217 currency. No floats anywhere.

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency that has minor units (so amounts in minor units mean something).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, String> {
        let c = iso_currency::Currency::from_code(code)
            .ok_or_else(|| format!("`{code}` is not an ISO 4217 currency code"))?;
        if c.exponent().is_none() {
            return Err(format!("`{code}` is not a currency money can be paid in"));
        }
        Ok(Self(c))
    }

    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// Digits after the decimal point (2 for USD, 0 for JPY).
    pub fn exponent(self) -> u32 {
        u32::from(self.0.exponent().unwrap_or(0))
    }

    /// Formats an amount for people: `$1,500.00`-style grouping, code-prefixed when
    /// the symbol is ambiguous is not worth the trouble here, so `USD 1,500.00`.
    pub fn format(self, minor: i64) -> String {
        let exp = self.exponent();
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        let scale = 10u64.pow(exp);
        let whole = group_thousands(abs / scale);
        if exp == 0 {
            format!("{sign}{} {whole}", self.code())
        } else {
            let frac = abs % scale;
            format!("{sign}{} {whole}.{frac:0width$}", self.code(), width = exp as usize)
        }
    }
}

fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount of money. Arithmetic is checked: overflow and mixed currencies are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("cannot combine {0} with {1}")]
    MixedCurrencies(&'static str, &'static str),
    #[error("amount overflows")]
    Overflow,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self { amount_minor, currency }
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::MixedCurrencies(self.currency.code(), other.currency.code()));
        }
        let amount_minor = self.amount_minor.checked_add(other.amount_minor).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount_minor, ..self })
    }

    pub fn checked_mul(self, factor: i64) -> Result<Money, MoneyError> {
        let amount_minor = self.amount_minor.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        Ok(Money { amount_minor, ..self })
    }
}

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.currency.format(self.amount_minor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn formats_minor_units_with_grouping() {
        assert_eq!(Money::new(150_000, usd()).to_string(), "USD 1,500.00");
        assert_eq!(Money::new(-5, usd()).to_string(), "-USD 0.05");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(Money::new(1_234_567, jpy).to_string(), "JPY 1,234,567");
    }

    #[test]
    fn unknown_and_unpayable_currencies_are_refused() {
        assert!(Currency::parse("XYZ").is_err());
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("XAU").is_err(), "gold has no minor unit");
    }

    #[test]
    fn mixed_currencies_and_overflow_are_errors() {
        let eur = Currency::parse("EUR").unwrap();
        assert!(Money::new(1, usd()).checked_add(Money::new(1, eur)).is_err());
        assert_eq!(Money::new(i64::MAX, usd()).checked_add(Money::new(1, usd())), Err(MoneyError::Overflow));
        assert_eq!(Money::new(i64::MAX / 2 + 1, usd()).checked_mul(2), Err(MoneyError::Overflow));
    }
}
