//! HDR histograms in the journal: serialized in the HdrHistogram V2 format with deflate
//! (the format the Java, Go and Rust libraries all read), then base64, so one interval's
//! latency distribution is a few hundred bytes of a JSON string and merges exactly.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};

/// The histogram as a base64 string; None when it is empty (nothing worth a field).
pub fn encode(histogram: &Histogram<u64>) -> Option<String> {
    if histogram.is_empty() {
        return None;
    }
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .ok()?;
    Some(BASE64.encode(bytes))
}

/// Reads back what [`encode`] wrote.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|error| format!("not base64: {error}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|error| format!("not an HDR histogram: {error:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_survives_the_round_trip_and_stays_small() {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for micros in (1..=2_000u64).map(|i| i * 997) {
            histogram.record(micros).unwrap();
        }
        let text = encode(&histogram).unwrap();
        assert!(text.len() < 4_000, "{} bytes", text.len());
        let back = decode(&text).unwrap();
        assert_eq!(back.len(), histogram.len());
        assert_eq!(
            back.value_at_quantile(0.95),
            histogram.value_at_quantile(0.95)
        );
        assert_eq!(back.max(), histogram.max());
        assert_eq!(encode(&Histogram::<u64>::new(3).unwrap()), None);
        assert!(decode("%%%").unwrap_err().starts_with("not base64"));
        assert!(
            decode("AAAA")
                .unwrap_err()
                .starts_with("not an HDR histogram")
        );
    }
}
