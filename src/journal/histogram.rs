//! HDR histograms in the journal: serialized in the HdrHistogram V2 format with deflate
//! (the format the Java, Go and Rust libraries all read), then base64, so one interval's
//! latency distribution is a few hundred bytes of a JSON string and merges exactly.
//!
//! A journal is read back by `voxsoak report`, possibly long after, possibly edited or cut
//! short: a histogram in it is checked before it is decoded, because the decoder allocates
//! whatever the header claims.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};

/// The V2 format's cookies: the counts as they are, and deflated (what [`encode`] writes).
const V2_COOKIE: u32 = 0x1c84_9313;
const V2_DEFLATE_COOKIE: u32 = 0x1c84_9314;
/// The V2 header before the counts: cookie, payload length, normalizing offset,
/// significant figures, lowest and highest trackable value, integer-to-double ratio.
const HEADER: usize = 40;
/// The widest histogram a journal holds is 1 µs to an hour at 3 significant figures
/// (`journal::calls`); a histogram claiming more is not one of ours. 2^36 µs is 19 hours.
const MAX_HIGHEST: u64 = 1 << 36;
const MAX_DIGITS: u32 = 3;
/// The most bytes the counts of a histogram within those bounds take: 28 672 counts of at
/// most 9 bytes each (252 KiB), with room to spare.
const MAX_INFLATED: usize = HEADER + (512 << 10);

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

/// Reads back what [`encode`] wrote; anything else (or a header claiming more than a
/// journal's histograms hold) is an error, found before the counts are allocated.
pub fn decode(text: &str) -> Result<Histogram<u64>, String> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|error| format!("not base64: {error}"))?;
    let counts = inflate(&bytes).map_err(|error| format!("not an HDR histogram: {error}"))?;
    check_for_decoder(&counts).map_err(|error| format!("not an HDR histogram: {error}"))?;
    Deserializer::new()
        .deserialize(&mut counts.as_slice())
        .map_err(|error| format!("not an HDR histogram: {error:?}"))
}

/// The counts of what [`encode`] wrote, without building a histogram of them (which
/// allocates and zeroes every bucket: a 72-hour journal holds 300,000 histograms): each
/// bucket that holds any, as (its lowest value, its count), in ascending order. Checked as
/// [`decode`] checks. [`add_into`] and [`quantile`] read them.
pub fn counts(text: &str) -> Result<Vec<Bucket>, String> {
    let mut counts = Vec::new();
    let mut scratch = Scratch::default();
    let (layout, payload, _) = scratch.open(text)?;
    each_count(payload, |index, count| {
        let (lowest, highest) = layout.bucket(index).ok_or(PAST_RANGE)?;
        counts.push(Bucket {
            lowest,
            highest,
            count,
        });
        Ok(())
    })?;
    Ok(counts)
}

/// The histograms of one journal field added up, as fast as a 72-hour journal needs: the
/// counts of each go by bucket index into one flat array (no histogram is decoded, no
/// bucket's value computed) and the total is built once, by [`Sum::drain_into`]. The
/// buffers a histogram is read through are kept from one to the next.
#[derive(Debug, Default)]
pub struct Sum {
    total: IndexCounts,
    /// The last histogram added, as (bucket index, count): see [`Sum::last`].
    last: Vec<(u32, u64)>,
    scratch: Scratch,
}

impl Sum {
    /// Adds what [`encode`] wrote, checked as [`decode`] checks; nothing of a histogram
    /// that cannot be read is added. A histogram of another layout than the journal's
    /// (hand-made) is added bucket by bucket, each at its lowest value.
    pub fn add(&mut self, text: &str) -> Result<(), String> {
        self.last.clear();
        let (layout, payload, ours) = self.scratch.open(text)?;
        let last = &mut self.last;
        let max_index = max_index();
        each_count(payload, |index, count| {
            let index = if ours {
                index
            } else {
                let (lowest, _) = layout.bucket(index).ok_or(PAST_RANGE)?;
                journal_index(lowest)
            };
            // The header's highest is at most MAX_HIGHEST, but the counts may claim more.
            let index = u32::try_from(index)
                .ok()
                .filter(|index| *index < max_index)
                .ok_or(PAST_RANGE)?;
            last.push((index, count));
            Ok(())
        })?;
        if !ours {
            // Buckets of another layout may land out of order, or together, in ours.
            self.last.sort_unstable_by_key(|(index, _)| *index);
        }
        self.total.add(&self.last);
        Ok(())
    }

    /// The last histogram [`Sum::add`] took, as (bucket index, count) of the journal's
    /// layout in ascending order: nothing when it could not be read. [`IndexCounts::add`]
    /// adds it up elsewhere.
    pub fn last(&self) -> &[(u32, u64)] {
        &self.last
    }

    /// [`Sum::last`] as [`counts`] gives a histogram's buckets, for [`quantile`].
    pub fn last_buckets(&self) -> Vec<Bucket> {
        journal_buckets(
            self.last
                .iter()
                .map(|(index, count)| (u64::from(*index), *count)),
        )
    }

    /// Records everything added so far into `total` (a histogram of the journal's
    /// bounds) and starts again from nothing.
    pub fn drain_into(&mut self, total: &mut Histogram<u64>) {
        self.total.drain_into(total);
    }
}

/// Counts by bucket index of the journal's layout, added up: a histogram without the
/// histogram, as cheap to add to as an array.
#[derive(Debug, Default, Clone)]
pub struct IndexCounts {
    counts: Vec<u64>,
}

impl IndexCounts {
    /// Adds (bucket index, count) pairs, as [`Sum::last`] gives them.
    pub fn add(&mut self, counts: &[(u32, u64)]) {
        let top = counts.iter().map(|(index, _)| *index as usize + 1).max();
        if self.counts.len() < top.unwrap_or(0) {
            self.counts.resize(top.unwrap_or(0), 0);
        }
        for (index, count) in counts {
            let total = &mut self.counts[*index as usize];
            *total = total.saturating_add(*count);
        }
    }

    /// The buckets that hold a count, as [`counts`] gives them.
    pub fn buckets(&self) -> Vec<Bucket> {
        journal_buckets(
            self.counts
                .iter()
                .enumerate()
                .filter(|(_, count)| **count > 0)
                .map(|(index, count)| (index as u64, *count)),
        )
    }

    /// Records every count into `total` (a histogram of the journal's bounds) and starts
    /// again from nothing.
    pub fn drain_into(&mut self, total: &mut Histogram<u64>) {
        for bucket in self.buckets() {
            record_saturating(total, bucket.lowest, bucket.count);
        }
        self.counts.clear();
    }
}

/// Records `count` at `value` (clamped to `total`'s range), saturating as the journal's
/// other counts do: only as many as keep the counts of `total` adding up to at most
/// `u64::MAX`. hdrhistogram saturates each bucket and the total count, but adds the
/// buckets up unchecked (`value_at_quantile`): a journal claiming counts near 2^63 in two
/// buckets, or the same histogram twice, overflowed that sum (a panic in a debug build).
fn record_saturating(total: &mut Histogram<u64>, value: u64, count: u64) {
    // The buckets add up to `len()` exactly, as long as nothing saturated it.
    let count = count.min(u64::MAX - total.len());
    if count > 0 {
        total.saturating_record_n(value, count);
    }
}

/// (bucket index, count) of the journal's layout as [`Bucket`]s.
fn journal_buckets(counts: impl Iterator<Item = (u64, u64)>) -> Vec<Bucket> {
    let layout = Layout::journal();
    counts
        .filter_map(|(index, count)| {
            let (lowest, highest) = layout.bucket(index)?;
            Some(Bucket {
                lowest,
                highest,
                count,
            })
        })
        .collect()
}

const PAST_RANGE: &str = "not an HDR histogram: a count past its range";

/// The histograms a journal holds: from 1 µs at 3 significant figures
/// (`journal::calls::latency_histogram`).
const JOURNAL_DIGITS: u32 = 3;
const JOURNAL_LOWEST: u64 = 1;

/// One past the highest bucket index of a journal histogram up to [`MAX_HIGHEST`].
fn max_index() -> u32 {
    let half_count_magnitude = Layout::journal().half_count_magnitude;
    // Bucket b (from 0) holds values below 2^(b + half_count_magnitude + 1).
    let buckets = 64 - MAX_HIGHEST.leading_zeros() - half_count_magnitude;
    (buckets + 1) << half_count_magnitude
}

/// The bucket index of `value` in a journal histogram (HdrHistogram's own arithmetic for
/// a lowest value of 1: unit magnitude 0).
fn journal_index(value: u64) -> u64 {
    let half_count_magnitude = Layout::journal().half_count_magnitude;
    let sub_bucket_mask = (1u64 << (half_count_magnitude + 1)) - 1;
    let bucket = u64::from(63 - half_count_magnitude - (value | sub_bucket_mask).leading_zeros());
    let sub_bucket = value >> bucket;
    ((bucket + 1) << half_count_magnitude) + sub_bucket - (1 << half_count_magnitude)
}

/// The buffers a histogram is read through: base64-decoded, then inflated.
#[derive(Debug, Default)]
struct Scratch {
    bytes: Vec<u8>,
    inflated: Vec<u8>,
    /// The inflater, reset for each histogram rather than made again (its state is
    /// tens of kilobytes).
    inflater: Option<flate2::Decompress>,
}

impl Scratch {
    /// The layout and the counts (V2's zig-zag LEB128 payload) of what [`encode`] wrote,
    /// checked as [`decode`] checks, and whether it is the journal's layout.
    fn open(&mut self, text: &str) -> Result<(Layout, &[u8], bool), String> {
        self.bytes.clear();
        BASE64
            .decode_vec(text.trim(), &mut self.bytes)
            .map_err(|error| format!("not base64: {error}"))?;
        let inflater = self
            .inflater
            .get_or_insert_with(|| flate2::Decompress::new(true));
        inflate_into(&self.bytes, &mut self.inflated, inflater)
            .map_err(|error| format!("not an HDR histogram: {error}"))?;
        let inner = &self.inflated;
        check(inner).map_err(|error| format!("not an HDR histogram: {error}"))?;
        let word = |at: usize| u32::from_be_bytes(inner[at..at + 4].try_into().expect("4 bytes"));
        let long = |at: usize| u64::from_be_bytes(inner[at..at + 8].try_into().expect("8 bytes"));
        let (digits, lowest) = (word(12), long(16));
        let payload = &inner[HEADER..HEADER + word(4) as usize];
        let ours = digits == JOURNAL_DIGITS && lowest == JOURNAL_LOWEST;
        Ok((Layout::of(digits, lowest), payload, ours))
    }
}

/// Calls `each` with (bucket index, count) for every bucket of V2 counts that holds any,
/// in ascending order; stops at its first error.
fn each_count(
    payload: &[u8],
    mut each: impl FnMut(u64, u64) -> Result<(), &'static str>,
) -> Result<(), String> {
    let mut index = 0u64;
    let mut at = 0;
    while at < payload.len() {
        let (number, read) = leb128(&payload[at..]);
        at += read;
        // Zig-zag: a negative number is a run of that many empty buckets.
        let count = ((number >> 1) as i64) ^ -((number & 1) as i64);
        if count < 0 {
            index = index.saturating_add(count.unsigned_abs());
            continue;
        }
        if count > 0 {
            each(index, count as u64)?;
        }
        // Runs may have taken it to u64::MAX, past every bucket: a count there is refused
        // by `each`, a zero count is nothing.
        index = index.saturating_add(1);
    }
    Ok(())
}

/// Adds what [`encode`] wrote into `total` (a histogram of the journal's bounds), as
/// decoding it and adding would, without the histogram in between.
pub fn add_into(text: &str, total: &mut Histogram<u64>) -> Result<(), String> {
    for bucket in counts(text)? {
        record_saturating(total, bucket.lowest, bucket.count);
    }
    Ok(())
}

/// The value at `quantile` of [`counts`], as `Histogram::value_at_quantile` of the
/// decoded histogram gives it; None when there is no count.
pub fn quantile(counts: &[Bucket], quantile: f64) -> Option<u64> {
    let total = counts
        .iter()
        .fold(0u64, |sum, bucket| sum.saturating_add(bucket.count));
    if total == 0 {
        return None;
    }
    let wanted = ((quantile.min(1.0) * total as f64).ceil() as u64).max(1);
    let mut seen = 0u64;
    let at = counts
        .iter()
        .find(|bucket| {
            seen = seen.saturating_add(bucket.count);
            seen >= wanted
        })
        .or(counts.last())?;
    Some(if quantile == 0.0 {
        at.lowest
    } else {
        at.highest
    })
}

/// One bucket of a histogram that holds a count: the values it stands for, and the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub lowest: u64,
    pub highest: u64,
    pub count: u64,
}

/// Where an HDR histogram's bucket index points: its bounds' unit and sub-bucket sizes.
struct Layout {
    unit_magnitude: u32,
    half_count_magnitude: u32,
}

impl Layout {
    /// The layout of the journal's histograms.
    fn journal() -> Self {
        Layout::of(JOURNAL_DIGITS, JOURNAL_LOWEST)
    }

    /// The layout of a histogram of `digits` significant figures from `lowest` (checked:
    /// at most [`MAX_DIGITS`], at least 1).
    fn of(digits: u32, lowest: u64) -> Self {
        let largest = 2 * 10u64.pow(digits);
        let count_magnitude = (largest as f64).log2().ceil() as u32;
        Layout {
            unit_magnitude: 63 - lowest.max(1).leading_zeros(),
            half_count_magnitude: count_magnitude.max(1) - 1,
        }
    }

    /// The lowest and highest value of the bucket at `index`; None past what a u64 holds.
    fn bucket(&self, index: u64) -> Option<(u64, u64)> {
        let half_count = 1u64 << self.half_count_magnitude;
        let mut bucket = (index >> self.half_count_magnitude) as i64 - 1;
        let mut sub_bucket = (index & (half_count - 1)) + half_count;
        if bucket < 0 {
            sub_bucket -= half_count;
            bucket = 0;
        }
        let shift = u32::try_from(bucket)
            .ok()?
            .checked_add(self.unit_magnitude)?;
        let value = sub_bucket.checked_shl(shift)?;
        let width = 1u64.checked_shl(shift)?;
        (value >> shift == sub_bucket).then(|| (value, value.saturating_add(width - 1)))
    }
}

/// One LEB128 number of the V2 counts (at most 9 bytes, the 9th taking all 8 bits) and
/// how many bytes it took; a number cut short by the end takes what is there.
#[inline]
fn leb128(bytes: &[u8]) -> (u64, usize) {
    // Most counts of a journal histogram take one byte.
    if let Some(&byte) = bytes.first().filter(|byte| **byte < 0x80) {
        return (u64::from(byte), 1);
    }
    let mut number = 0u64;
    for (position, &byte) in bytes.iter().enumerate().take(9) {
        if position == 8 {
            return (number | u64::from(byte) << 56, 9);
        }
        number |= u64::from(byte & 0x7f) << (7 * position);
        if byte & 0x80 == 0 {
            return (number, position + 1);
        }
    }
    (number, bytes.len().min(9))
}

/// The uncompressed V2 form inside [`encode`]'s deflated one, at most [`MAX_INFLATED`]
/// bytes of it (a small deflate stream can inflate to gigabytes).
fn inflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut inflated = Vec::new();
    inflate_into(bytes, &mut inflated, &mut flate2::Decompress::new(true))?;
    Ok(inflated)
}

/// [`inflate`] into `inflated` (cleared first), reusing its memory.
fn inflate_into(
    bytes: &[u8],
    inflated: &mut Vec<u8>,
    inflater: &mut flate2::Decompress,
) -> Result<(), String> {
    if be_u32(bytes, 0) != Some(V2_DEFLATE_COOKIE) {
        return Err("not the deflated V2 format".into());
    }
    let length = be_u32(bytes, 4).ok_or("cut short")? as usize;
    let deflated = bytes.get(8..).and_then(|rest| rest.get(..length));
    let deflated = deflated.ok_or("the deflated counts are cut short")?;
    inflated.clear();
    inflater.reset(true);
    loop {
        if inflated.len() > MAX_INFLATED {
            return Err(format!(
                "larger than {MAX_INFLATED} bytes inflated, more than any journal histogram"
            ));
        }
        // Room for more: decompress_vec writes only into spare capacity.
        inflated.reserve(16 << 10);
        let (read, written) = (inflater.total_in(), inflated.len());
        let rest = &deflated[(read as usize).min(deflated.len())..];
        let status = inflater
            .decompress_vec(rest, inflated, flate2::FlushDecompress::None)
            .map_err(|error| format!("deflate: {error}"))?;
        if status == flate2::Status::StreamEnd {
            break;
        }
        if inflater.total_in() == read && inflated.len() == written {
            return Err("deflate: the stream is cut short".into());
        }
    }
    if inflated.len() > MAX_INFLATED {
        return Err(format!(
            "larger than {MAX_INFLATED} bytes inflated, more than any journal histogram"
        ));
    }
    Ok(())
}

/// Whether the uncompressed V2 form describes a histogram a journal could hold, whose
/// counts are all there and can be read.
fn check(inner: &[u8]) -> Result<(), String> {
    if inner.len() < HEADER || be_u32(inner, 0) != Some(V2_COOKIE) {
        return Err("no V2 header".into());
    }
    // In range: the header is all there.
    let word = |at: usize| u32::from_be_bytes(inner[at..at + 4].try_into().expect("4 bytes"));
    let long = |at: usize| u64::from_be_bytes(inner[at..at + 8].try_into().expect("8 bytes"));
    let (payload, digits, lowest, highest) = (word(4), word(12), long(16), long(24));
    let follow = inner.len() - HEADER;
    if payload as usize > follow {
        return Err(format!(
            "the header claims {payload} bytes of counts, {follow} follow"
        ));
    }
    if digits > MAX_DIGITS {
        return Err(format!(
            "{digits} significant figures, more than a journal's histograms ({MAX_DIGITS})"
        ));
    }
    if lowest == 0 || highest > MAX_HIGHEST {
        return Err(format!(
            "the range {lowest}..={highest} is not within a journal's histograms' (1..={MAX_HIGHEST})"
        ));
    }
    Ok(())
}

/// [`check`], and what only the decoder needs: no count it would negate with overflow
/// ([`counts`] reads such a run without negating it), and counts that add up to at most
/// `u64::MAX` (hdrhistogram adds its buckets up unchecked; see [`record_saturating`]).
fn check_for_decoder(inner: &[u8]) -> Result<(), String> {
    check(inner)?;
    let payload = be_u32(inner, 4).unwrap_or(0) as usize;
    match counts_overflow(&inner[HEADER..HEADER + payload]) {
        Some(problem) => Err(problem.into()),
        None => Ok(()),
    }
}

/// What in the V2 counts (zig-zag LEB128 numbers of at most 9 bytes, the 9th taking all 8
/// bits; a negative one is a run of that many zero counts) would overflow where overflow
/// is checked (debug builds, `cargo test`): -2^63, which the decoder negates, or counts
/// adding up past `u64::MAX`.
fn counts_overflow(counts: &[u8]) -> Option<&'static str> {
    let mut at = 0;
    let mut total = 0u64;
    while at < counts.len() {
        let (number, read) = leb128(&counts[at..]);
        // Zig-zag: u64::MAX is -2^63; an even number is the count number / 2.
        if number == u64::MAX {
            return Some("a run of -2^63 zero counts");
        }
        if number & 1 == 0 {
            match total.checked_add(number >> 1) {
                Some(sum) => total = sum,
                None => return Some("counts that add up past 2^64"),
            }
        }
        at += read;
    }
    None
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts walked without a histogram give what decoding gives: the same buckets,
    /// added into a total, and the same quantiles, for histograms of every shape a
    /// journal holds (sparse, dense, one value, values up to the top of the range).
    #[test]
    fn counts_without_a_histogram_are_the_decoded_ones() {
        let shapes: [&[u64]; 5] = [
            &[1],
            &[3_599_999_999],
            &[1, 2, 3, 1_000, 1_001, 65_536, 3_600_000_000],
            &[250_000; 40],
            &[0; 0],
        ];
        let dense: Vec<u64> = (0..5_000u64).map(|i| 1 + i * 7919 % 4_000_000).collect();
        let bounds = [(3_600_000_000, 3), (60_000_000, 1)];
        for (values, (highest, digits)) in shapes
            .iter()
            .copied()
            .chain([dense.as_slice()])
            .flat_map(|values| bounds.map(|bounds| (values, bounds)))
        {
            let values: Vec<u64> = values.iter().map(|v| (*v).min(highest)).collect();
            let mut histogram = Histogram::<u64>::new_with_bounds(1, highest, digits).unwrap();
            for (i, value) in values.iter().enumerate() {
                histogram.record_n(*value, 1 + i as u64 % 3).unwrap();
            }
            let Some(text) = encode(&histogram) else {
                assert!(values.is_empty());
                continue;
            };
            let decoded = decode(&text).unwrap();
            let mut by_decode = Histogram::<u64>::new_with_bounds(1, highest, digits).unwrap();
            by_decode.add(&decoded).unwrap();
            let mut by_counts = Histogram::<u64>::new_with_bounds(1, highest, digits).unwrap();
            add_into(&text, &mut by_counts).unwrap();
            assert_eq!(by_counts, by_decode, "{values:?}");
            // By bucket index, twice (a total of two), drained into a histogram once.
            // (Another layout than the journal's is summed in the journal's finer one.)
            let mut sum = Sum::default();
            let mut by_sum = Histogram::<u64>::new_with_bounds(1, highest, digits).unwrap();
            sum.add(&text).unwrap();
            sum.add(&text).unwrap();
            sum.drain_into(&mut by_sum);
            let mut twice = by_decode.clone();
            twice.add(&decoded).unwrap();
            assert_eq!(by_sum, twice, "{values:?}");
            let counts = counts(&text).unwrap();
            for q in [0.0, 0.5, 0.95, 0.99, 0.999, 1.0] {
                assert_eq!(
                    quantile(&counts, q),
                    Some(decoded.value_at_quantile(q)),
                    "q {q} of {values:?}"
                );
                if digits == 3 {
                    let mut last = IndexCounts::default();
                    last.add(sum.last());
                    assert_eq!(
                        quantile(&sum.last_buckets(), q),
                        quantile(&last.buckets(), q)
                    );
                    assert_eq!(
                        quantile(&last.buckets(), q),
                        Some(decoded.value_at_quantile(q)),
                        "q {q} of {values:?}"
                    );
                }
            }
        }
        assert_eq!(quantile(&[], 0.5), None);
        assert!(counts("%%%").unwrap_err().starts_with("not base64"));
        // Nothing of a histogram that cannot be read is added.
        let mut sum = Sum::default();
        let mut total = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        assert!(sum.add("%%%").is_err());
        sum.drain_into(&mut total);
        assert!(total.is_empty());
        assert!(sum.last().is_empty());
    }

    /// The bucket index of a value is HdrHistogram's: every bucket's lowest value maps back
    /// to its own index, and a value recorded in a journal histogram lands at the index
    /// its counts hold it at.
    #[test]
    fn the_index_of_a_value_is_the_histograms() {
        let layout = Layout::journal();
        for index in (0..max_index() as u64)
            .step_by(7)
            .chain([max_index() as u64 - 1])
        {
            let (lowest, highest) = layout.bucket(index).unwrap();
            assert_eq!(journal_index(lowest), index, "{lowest}");
            assert_eq!(journal_index(highest), index, "{highest}");
        }
        for value in [1, 2047, 2048, 2049, 65_537, 3_600_000_000, MAX_HIGHEST] {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_HIGHEST, 3).unwrap();
            histogram.record(value).unwrap();
            let mut sum = Sum::default();
            sum.add(&encode(&histogram).unwrap()).unwrap();
            assert_eq!(sum.last(), [(journal_index(value) as u32, 1)], "{value}");
        }
    }

    /// A journal histogram's counts may claim a bucket past any a journal's range holds:
    /// refused by index, never indexing past the flat array's bounds.
    #[test]
    fn a_count_past_the_range_is_refused_by_the_sum() {
        let mut counts = header(4, 3, 1, 3_600_000_000);
        // A run of 2^40 empty buckets (zig-zag -2^40 = 2^41 - 1), then a count of 1.
        let mut run = Vec::new();
        let mut number = (1u64 << 41) - 1;
        while number >= 0x80 {
            run.push((number as u8) | 0x80);
            number >>= 7;
        }
        run.push(number as u8);
        run.push(2);
        counts[4..8].copy_from_slice(&(run.len() as u32).to_be_bytes());
        counts.extend(run);
        let mut sum = Sum::default();
        let mut total = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let error = sum.add(&compressed(&counts)).unwrap_err();
        assert!(error.contains("past its range"), "{error}");
        sum.drain_into(&mut total);
        assert!(total.is_empty());
    }

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

    /// The V2 header (uncompressed) of a histogram of `lowest..=highest` with `digits`
    /// significant figures, whose counts take `payload` bytes.
    fn header(payload: u32, digits: u32, lowest: u64, highest: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(0x1c84_9313u32.to_be_bytes());
        bytes.extend(payload.to_be_bytes());
        bytes.extend(0u32.to_be_bytes());
        bytes.extend(digits.to_be_bytes());
        bytes.extend(lowest.to_be_bytes());
        bytes.extend(highest.to_be_bytes());
        bytes.extend(1.0f64.to_be_bytes());
        bytes
    }

    fn compressed(inner: &[u8]) -> String {
        use std::io::Write as _;
        let mut deflate = flate2::write::ZlibEncoder::new(Vec::new(), Default::default());
        deflate.write_all(inner).unwrap();
        let deflated = deflate.finish().unwrap();
        let mut bytes = 0x1c84_9314u32.to_be_bytes().to_vec();
        bytes.extend((deflated.len() as u32).to_be_bytes());
        bytes.extend(deflated);
        BASE64.encode(bytes)
    }

    /// Found by the fuzz target `histogram`: the counts hold -2^63 (nine 0xff bytes), a
    /// run of that many zeros, which the decoder negates: "attempt to negate with overflow"
    /// in a debug build.
    #[test]
    fn counts_the_decoder_would_negate_with_overflow_are_refused() {
        let mut counts = header(9, 3, 1, 3_600_000_000);
        counts.extend([0xff; 9]);
        let error = decode(&compressed(&counts)).unwrap_err();
        assert!(error.contains("-2^63"), "{error}");
        // The same after a count: the numbers are read one by one.
        let mut counts = header(10, 3, 1, 3_600_000_000);
        counts.push(2);
        counts.extend([0xff; 9]);
        assert!(decode(&compressed(&counts)).unwrap_err().contains("-2^63"));
    }

    /// Found by the fuzz target `histogram`: a histogram with counts near 2^63 in two
    /// buckets, added twice into a total (a report adds up every interval's), made counts
    /// that add up past 2^64, and hdrhistogram adds them up unchecked (`value_at_quantile`:
    /// "attempt to add with overflow" in a debug build). A total saturates at `u64::MAX`
    /// counts instead, however it is added up, and the decoder refuses a histogram whose own
    /// counts add up past it.
    #[test]
    fn counts_adding_up_past_2_to_the_64_saturate_in_a_total_and_are_refused_by_the_decoder() {
        // 2^63 - 1 (zig-zag 2^64 - 2) in V2's LEB128: eight bytes of 7 bits, a ninth of 8.
        const NEAR_2_TO_THE_63: [u8; 9] = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let histogram = |buckets: u32| {
            let mut counts = header(9 * buckets, 3, 1, 3_600_000_000);
            for _ in 0..buckets {
                counts.extend(NEAR_2_TO_THE_63);
            }
            compressed(&counts)
        };
        let two = histogram(2);
        let empty = || Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let mut added = empty();
        add_into(&two, &mut added).unwrap();
        add_into(&two, &mut added).unwrap();
        let mut summed = empty();
        let mut sum = Sum::default();
        sum.add(&two).unwrap();
        sum.add(&two).unwrap();
        sum.drain_into(&mut summed);
        for total in [added, summed] {
            assert_eq!(total.len(), u64::MAX);
            // As summary.json reads it; the counts are in the buckets of 0 and 1.
            let percentiles = crate::journal::calls::Percentiles::of(&total);
            assert_eq!(percentiles.count, u64::MAX);
            assert_eq!(total.value_at_quantile(0.0), 0);
            assert_eq!(total.value_at_quantile(1.0), 1);
        }
        let decoded = decode(&two).unwrap();
        let percentiles = crate::journal::calls::Percentiles::of(&decoded);
        assert_eq!(percentiles.count, u64::MAX - 1);
        let error = decode(&histogram(3)).unwrap_err();
        assert!(error.contains("past 2^64"), "{error}");
    }

    /// Found by the fuzz target `histogram`: runs of empty buckets that take the bucket
    /// index to 2^64, then a zero count, overflowed the index as the counts were walked
    /// ("attempt to add with overflow" in a debug build). Nothing is past every bucket.
    #[test]
    fn runs_past_every_bucket_then_a_count_are_walked_without_overflow() {
        // -(2^63 - 1) (zig-zag 2^64 - 3): a run of that many empty buckets, three times.
        const LONG_RUN: [u8; 9] = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        let with = |last: &[u8]| {
            let mut counts = header(27 + last.len() as u32, 3, 1, 3_600_000_000);
            for _ in 0..3 {
                counts.extend(LONG_RUN);
            }
            counts.extend(last);
            compressed(&counts)
        };
        let mut total = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        let mut sum = Sum::default();
        // Then a zero count: nothing.
        let zero = with(&[0]);
        assert_eq!(counts(&zero), Ok(Vec::new()));
        add_into(&zero, &mut total).unwrap();
        sum.add(&zero).unwrap();
        // Then a zero count and a count of one: past every bucket.
        let past = with(&[0, 2]);
        assert!(counts(&past).unwrap_err().contains("past its range"));
        assert!(add_into(&past, &mut total).is_err());
        assert!(sum.add(&past).is_err());
        sum.drain_into(&mut total);
        assert!(total.is_empty());
        // The decoder reads them too, without a panic.
        let _ = decode(&zero);
        let _ = decode(&past);
    }

    /// Found by the fuzz target `histogram`: the decoder allocated whatever the header
    /// claimed (a 4 GiB payload buffer; counts for a range up to 2^63 at 5 significant
    /// figures) before reading a byte of it. The header is checked first.
    #[test]
    fn a_header_that_claims_too_much_is_refused_before_anything_is_allocated() {
        let refused = |text: &str| decode(text).unwrap_err();
        let too_long = refused(&compressed(&header(u32::MAX, 3, 1, 3_600_000_000)));
        assert!(
            too_long.contains("4294967295 bytes of counts"),
            "{too_long}"
        );
        let too_wide = refused(&compressed(&header(0, 3, 1, u64::MAX >> 1)));
        assert!(too_wide.contains("range"), "{too_wide}");
        let too_fine = refused(&compressed(&header(0, 5, 1, 3_600_000_000)));
        assert!(too_fine.contains("significant"), "{too_fine}");
        // Uncompressed, as `encode` never writes.
        let plain = BASE64.encode(header(u32::MAX, 3, 1, 3_600_000_000));
        assert!(refused(&plain).starts_with("not an HDR histogram"));
        // A deflate bomb: far more bytes out than a histogram of ours can hold.
        let mut bomb = header(64 << 20, 3, 1, 3_600_000_000);
        bomb.resize(bomb.len() + (64 << 20), 0);
        let bomb = refused(&compressed(&bomb));
        assert!(bomb.contains("larger than"), "{bomb}");
        // What `encode` writes still reads.
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        histogram.record(1500).unwrap();
        assert_eq!(decode(&encode(&histogram).unwrap()).unwrap(), histogram);
    }
}
