//! Extractors whose rejections come back in our error format, so even
//! malformed JSON gets `{"error": {...}}`.

use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct AppJson<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct AppQuery<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct AppPath<T>(pub T);

/// Multipart form data; a request that is not (no boundary, another
/// content type) gets our error body instead of axum's plain text.
pub struct AppMultipart(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for AppMultipart {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Ok(Self(
            axum::extract::Multipart::from_request(request, state).await?,
        ))
    }
}

/// An optional whole number that also accepts `5.0` and `"5"`: JSON Schema
/// counts `5.0` as an integer, and generated clients (and query strings)
/// send it so. Fractions and negatives are refused.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    struct Whole;

    impl serde::de::Visitor<'_> for Whole {
        type Value = Option<u64>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number")
        }

        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            u64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom("expected a whole number of at least 0"))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            if v.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&v) {
                Ok(Some(v as u64))
            } else {
                Err(E::custom("expected a whole number"))
            }
        }

        /// Digits, optionally followed by `.` and zeros: no sign, exponent
        /// or spaces, which a JSON Schema integer never spells.
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let (digits, fraction) = v.split_once('.').unwrap_or((v, "0"));
            let plain = |s: &str, allowed: fn(u8) -> bool| !s.is_empty() && s.bytes().all(allowed);
            if !plain(digits, |b| b.is_ascii_digit()) || !plain(fraction, |b| b == b'0') {
                return Err(E::custom("expected a whole number"));
            }
            digits
                .parse::<u64>()
                .map(Some)
                .map_err(|_| E::custom("the number is too large"))
        }
    }

    match deserializer.deserialize_any(Whole)? {
        None => Ok(None),
        Some(n) => T::try_from(n)
            .map(Some)
            .map_err(|_| serde::de::Error::custom("the number is too large")),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default, deserialize_with = "super::whole_number")]
        n: Option<u32>,
    }

    #[test]
    fn whole_numbers_in_any_spelling() {
        let n = |json: &str| serde_json::from_str::<Body>(json).map(|b| b.n);
        assert_eq!(n(r#"{"n": 5}"#).unwrap(), Some(5));
        assert_eq!(n(r#"{"n": 5.0}"#).unwrap(), Some(5));
        assert_eq!(n(r#"{"n": null}"#).unwrap(), None);
        assert_eq!(n("{}").unwrap(), None);
        assert!(n(r#"{"n": 5.5}"#).is_err());
        assert!(n(r#"{"n": -1}"#).is_err());
        assert!(n(r#"{"n": 5000000000}"#).is_err());
        assert!(n(r#"{"n": "x"}"#).is_err());
        assert_eq!(n(r#"{"n": "7"}"#).unwrap(), Some(7));
        assert_eq!(n(r#"{"n": "7.00"}"#).unwrap(), Some(7));
        for refused in ["+7", "1e2", " 7", "7.5", "7.", "", "-0"] {
            assert!(n(&format!(r#"{{"n": "{refused}"}}"#)).is_err(), "{refused}");
        }
    }
}
