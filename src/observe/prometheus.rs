//! The Prometheus scraper: `GET /metrics` in the text exposition format, the samples of
//! the series a scenario names (`[observe] record`), and its `detect` conditions evaluated
//! on every scrape.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::{Observation, Signal};
use crate::scenario::faults::{MetricCondition, SeriesSelector};
use crate::scenario::observe::RecordedSeries;

/// The largest `/metrics` page read; a bigger one (or an endless one) is a failed scrape,
/// refused as soon as it passes this.
pub const MAX_PAGE: usize = 8 << 20;

/// One sample: a series name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// The samples of a page in the text exposition format. Comments, blank lines and lines
/// that do not parse are skipped (a fleet's page is not trusted to be well formed).
pub fn parse(page: &str) -> Vec<Sample> {
    page.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"}` → labels and the text after the `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = text.split_once('=')?;
        let mut chars = after.trim_start().strip_prefix('"')?.char_indices();
        let body = after.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut end = None;
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(index);
                    break;
                }
                other => value.push(other),
            }
        }
        labels.push((name.trim().to_owned(), value));
        text = &body[end? + 1..];
        text = text.trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

/// The sum of every sample of the selector's name whose labels include its labels; None
/// when there is none.
pub fn select(samples: &[Sample], selector: &SeriesSelector) -> Option<f64> {
    let mut matched = samples.iter().filter(|sample| {
        sample.name == selector.name
            && selector
                .labels
                .iter()
                .all(|wanted| sample.labels.iter().any(|label| label == wanted))
    });
    let first = matched.next()?.value;
    Some(matched.fold(first, |sum, sample| sum + sample.value))
}

/// The condition's left-hand value on these samples (None: a series is missing, or the
/// denominator is zero).
pub fn evaluate(samples: &[Sample], condition: &MetricCondition) -> Option<f64> {
    let numerator = select(samples, &condition.numerator)?;
    match &condition.denominator {
        Some(denominator) => {
            let denominator = select(samples, denominator)?;
            (denominator != 0.0).then(|| numerator / denominator)
        }
        None => Some(numerator),
    }
}

/// What one scraper reads.
#[derive(Debug, Clone)]
pub struct ScrapeSettings {
    pub url: String,
    pub interval: Duration,
    /// Evaluated on every scrape ([`Signal::Condition`], by index).
    pub conditions: Vec<MetricCondition>,
    /// Read on every scrape ([`Signal::Recorded`]); the hub decides what to journal.
    pub record: Vec<RecordedSeries>,
    /// The fleet's resident memory and its temp dir's bytes ([`Signal::Gauges`]), by the
    /// fleet's own names.
    pub rss: SeriesSelector,
    pub temp_dir: SeriesSelector,
}

/// Scrapes every `settings.interval` until `stop`.
pub async fn scrape(
    http: reqwest::Client,
    settings: ScrapeSettings,
    observations: UnboundedSender<Observation>,
    stop: CancellationToken,
) {
    let ScrapeSettings {
        url,
        interval,
        conditions,
        record,
        rss,
        temp_dir,
    } = settings;
    let timeout = interval.max(Duration::from_secs(2));
    super::every(interval, observations, stop, || async {
        let page = match fetch(&http, &url, timeout).await {
            Ok(page) => page,
            Err(reason) => return vec![Signal::ScrapeFailed { reason }],
        };
        let samples = parse(&page);
        let mut signals: Vec<Signal> = conditions
            .iter()
            .enumerate()
            .map(|(index, condition)| {
                let value = evaluate(&samples, condition);
                Signal::Condition {
                    index,
                    holds: value.is_some_and(|value| {
                        condition.comparison.holds(value, condition.threshold)
                    }),
                    value,
                }
            })
            .collect();
        signals.push(Signal::Gauges {
            rss_bytes: select(&samples, &rss),
            temp_dir_bytes: select(&samples, &temp_dir),
        });
        if !record.is_empty() {
            signals.push(Signal::Recorded {
                values: recorded(&samples, &record),
            });
        }
        signals
    })
    .await;
}

/// Each recorded series' value on these samples, keyed by its text.
pub fn recorded(samples: &[Sample], record: &[RecordedSeries]) -> Vec<(String, Option<f64>)> {
    record
        .iter()
        .map(|series| (series.text.clone(), select(samples, &series.selector)))
        .collect()
}

/// The page at `url`, read as it arrives and refused at the first byte past [`MAX_PAGE`]
/// (an endless or enormous body costs at most that much memory).
async fn fetch(http: &reqwest::Client, url: &str, timeout: Duration) -> Result<String, String> {
    let over = || format!("the page is over {} MiB", MAX_PAGE >> 20);
    let failure = |error| crate::failure::RequestFailure::of(error).detail;
    let mut response = http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(failure)?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status().as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_PAGE as u64)
    {
        return Err(over());
    }
    let mut page = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failure)? {
        if page.len() + chunk.len() > MAX_PAGE {
            return Err(over());
        }
        page.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&page).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::faults::Comparison;

    const PAGE: &str = r#"# HELP db_pool_in_use Connections in use.
# TYPE db_pool_in_use gauge
db_pool_in_use 19
db_pool_size 20
tts_requests_total{status="200"} 40
tts_requests_total{status="429",path="/v1/audio/speech"} 7
weird{a="x\"y",b="}"} 1.5e3 1700000000
garbage line here
response_seconds_bucket{le="+Inf"} +Inf
"#;

    fn selector(name: &str, labels: &[(&str, &str)]) -> SeriesSelector {
        SeriesSelector {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn the_exposition_format_parses_and_garbage_is_skipped() {
        let samples = parse(PAGE);
        assert_eq!(samples.len(), 6);
        assert_eq!(
            select(&samples, &selector("db_pool_in_use", &[])),
            Some(19.0)
        );
        assert_eq!(
            select(&samples, &selector("tts_requests_total", &[])),
            Some(47.0)
        );
        assert_eq!(
            select(
                &samples,
                &selector("tts_requests_total", &[("status", "429")])
            ),
            Some(7.0)
        );
        assert_eq!(
            select(&samples, &selector("weird", &[("a", "x\"y"), ("b", "}")])),
            Some(1500.0)
        );
        assert_eq!(select(&samples, &selector("missing", &[])), None);
        assert!(parse("{}\n=\nname{a=\"unterminated} 1\n").is_empty());
    }

    #[test]
    fn recorded_series_are_keyed_by_their_text() {
        let samples = parse(PAGE);
        let record = [
            RecordedSeries {
                text: "db_pool_in_use".into(),
                selector: selector("db_pool_in_use", &[]),
            },
            RecordedSeries {
                text: r#"tts_requests_total{status="429"}"#.into(),
                selector: selector("tts_requests_total", &[("status", "429")]),
            },
            RecordedSeries {
                text: "missing".into(),
                selector: selector("missing", &[]),
            },
        ];
        assert_eq!(
            recorded(&samples, &record),
            vec![
                ("db_pool_in_use".to_owned(), Some(19.0)),
                (r#"tts_requests_total{status="429"}"#.to_owned(), Some(7.0)),
                ("missing".to_owned(), None),
            ]
        );
    }

    #[test]
    fn conditions_divide_and_compare() {
        let samples = parse(PAGE);
        let condition = MetricCondition {
            numerator: selector("db_pool_in_use", &[]),
            denominator: Some(selector("db_pool_size", &[])),
            comparison: Comparison::Greater,
            threshold: 0.9,
            text: String::new(),
        };
        assert_eq!(evaluate(&samples, &condition), Some(0.95));
        let zero = parse("a 1\nb 0\n");
        let divide_by_zero = MetricCondition {
            numerator: selector("a", &[]),
            denominator: Some(selector("b", &[])),
            ..condition
        };
        assert_eq!(evaluate(&zero, &divide_by_zero), None);
    }
}
