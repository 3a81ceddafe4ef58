//! Referral codes: the part after `/r/` in a link.
//!
//! Generated codes use an alphabet without look-alikes (no 0/O, 1/I/L, U), so a
//! code read aloud or typed from paper survives. Codes compare case-insensitively;
//! the canonical form is upper case.

use serde::{Deserialize, Serialize};

/// 30 symbols: digits 2–9 and letters without I, L, O, U.
pub const ALPHABET: &[u8; 30] = b"23456789ABCDEFGHJKMNPQRSTVWXYZ";
/// 30^8 ≈ 6.6 × 10^11 codes: guessing a live one at random is hopeless.
pub const GENERATED_LEN: usize = 8;
pub const MAX_LEN: usize = 32;
pub const MIN_VANITY_LEN: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReferralCode(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("a code is at most {MAX_LEN} characters")]
    TooLong,
    #[error("a vanity code is at least {MIN_VANITY_LEN} characters")]
    TooShort,
    #[error("a code uses only letters A–Z, digits, `-` and `_`")]
    BadCharacter,
    #[error("a code starts and ends with a letter or digit")]
    BadEdge,
}

impl CodeError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLong => "code_too_long",
            Self::TooShort => "code_too_short",
            Self::BadCharacter => "code_bad_character",
            Self::BadEdge => "code_bad_edge",
        }
    }
}

impl ReferralCode {
    /// Parses a code as found in a link. Anything that could not be a code of ours
    /// (too long, non-ASCII, `/`, `..`, NUL) is refused before it reaches a lookup.
    pub fn parse(raw: &str) -> Result<Self, CodeError> {
        if raw.len() > MAX_LEN {
            return Err(CodeError::TooLong);
        }
        if raw.is_empty() {
            return Err(CodeError::TooShort);
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(CodeError::BadCharacter);
        }
        let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
        if !edge_ok(raw.bytes().next()) || !edge_ok(raw.bytes().last()) {
            return Err(CodeError::BadEdge);
        }
        Ok(Self(raw.to_ascii_uppercase()))
    }

    /// Parses a code a person chose. Stricter than [`parse`](Self::parse) on length.
    pub fn parse_vanity(raw: &str) -> Result<Self, CodeError> {
        let code = Self::parse(raw)?;
        if code.0.len() < MIN_VANITY_LEN {
            return Err(CodeError::TooShort);
        }
        Ok(code)
    }

    /// Builds a code from 8 random bytes supplied by the caller. Each symbol takes
    /// one byte reduced modulo 30 (bias under 1% per symbol, which does not help a
    /// guesser: the code space is what protects links, not uniformity).
    pub fn generate(random: [u8; GENERATED_LEN]) -> Self {
        let s = random.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ReferralCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_compare_case_insensitively() {
        assert_eq!(ReferralCode::parse("abCD-12").unwrap(), ReferralCode::parse("ABcd-12").unwrap());
        assert_eq!(ReferralCode::parse("abcd").unwrap().as_str(), "ABCD");
    }

    #[test]
    fn hostile_codes_are_refused() {
        assert_eq!(ReferralCode::parse(&"A".repeat(33)), Err(CodeError::TooLong));
        assert_eq!(ReferralCode::parse("ÄBCD"), Err(CodeError::BadCharacter));
        assert_eq!(ReferralCode::parse("ab/cd"), Err(CodeError::BadCharacter));
        assert_eq!(ReferralCode::parse(".."), Err(CodeError::BadCharacter));
        assert_eq!(ReferralCode::parse("ab\0cd"), Err(CodeError::BadCharacter));
        assert_eq!(ReferralCode::parse("ab%00"), Err(CodeError::BadCharacter));
        assert_eq!(ReferralCode::parse("-abc"), Err(CodeError::BadEdge));
        assert_eq!(ReferralCode::parse(""), Err(CodeError::TooShort));
    }

    #[test]
    fn vanity_codes_need_four_characters() {
        assert_eq!(ReferralCode::parse_vanity("abc"), Err(CodeError::TooShort));
        assert!(ReferralCode::parse_vanity("jane-2026").is_ok());
    }

    #[test]
    fn generated_codes_use_only_unambiguous_symbols() {
        let code = ReferralCode::generate([0, 30, 31, 61, 255, 128, 7, 99]);
        assert_eq!(code.as_str().len(), GENERATED_LEN);
        assert!(code.as_str().bytes().all(|b| ALPHABET.contains(&b)));
        for bad in ['0', '1', 'O', 'I', 'L', 'U'] {
            assert!(!code.as_str().contains(bad));
        }
        assert_eq!(ReferralCode::parse(code.as_str()).unwrap(), code);
    }
}
