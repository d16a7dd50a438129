//! `proxy`: a TCP fault proxy, like Toxiproxy, in front of one of the fleet's dependencies
//! (a stand-in, or any `host:port` on `allow_hosts`), with toxics switched on for the
//! fault's window. The proxy itself is `crate::chaos::proxy`.

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::super::Target;
use super::super::raw::{RawFault, RawValue};
use super::super::validate::{Validator, Zero, host_in};
use super::{ActsOn, DefaultDetection, DetectionRule, FaultSpec, KindEntry, KindSpec, RecoverFrom};
use crate::units::{format_byte_size, format_duration};

pub const PROXY: KindSpec = KindSpec {
    name: "proxy",
    parameters: &[
        "upstream",
        "listen",
        "latency",
        "jitter",
        "bandwidth",
        "stall",
        "reset",
        "slice_size",
        "slice_delay",
        "down",
        "toxicity",
    ],
    required: &["upstream"],
    acts_on: ActsOn::Proxy,
    detection: DefaultDetection::Unhealthy,
    recover_from: RecoverFrom::Clear,
    heals_itself: false,
    validate,
    chaos_help: "  proxy
      --set upstream=HOST:PORT --set listen=127.0.0.1:PORT and at least one toxic:
      latency, jitter, bandwidth, stall, reset, slice_size (slice_delay), down; toxicity.
      The proxy runs for the duration; the fleet must already be pointed at listen.
",
    example: "upstream = \"tts\"\nlatency = \"500ms\"\ntoxicity = 0.5",
};

/// `proxy`: a TCP fault proxy in front of one of the fleet's dependencies.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyFault {
    pub upstream: ProxyUpstream,
    /// Where the proxy listens; for an external fleet, which must be pointed at it.
    pub listen: Option<SocketAddr>,
    pub toxics: ProxyToxicsSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProxyUpstream {
    /// The TTS stand-in (the embedded fleet is pointed at the proxy).
    Tts,
    /// The LLM stand-in.
    Llm,
    /// Any `host:port` (on `allow_hosts`).
    Address(String),
}

impl std::fmt::Display for ProxyUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyUpstream::Tts => f.write_str("the TTS stand-in"),
            ProxyUpstream::Llm => f.write_str("the LLM stand-in"),
            ProxyUpstream::Address(address) => f.write_str(address),
        }
    }
}

/// The toxics a `proxy` fault switches on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProxyToxicsSpec {
    pub latency: Duration,
    pub jitter: Duration,
    /// Bytes per second, each direction.
    pub bandwidth: Option<u64>,
    pub stall: bool,
    pub reset: bool,
    /// Slices of this many bytes, `slice_delay` apart.
    pub slice: Option<(usize, Duration)>,
    pub down: bool,
    /// Share of connections affected.
    pub toxicity: f64,
}

/// The detection rule of a proxy entry that names none: a proxy in front of a stand-in is
/// noticed by the alert on that dependency, any other by the fleet's health.
pub(super) fn default_detection(proxy: &ProxyFault) -> DetectionRule {
    match proxy.upstream {
        ProxyUpstream::Tts => DetectionRule::alert("TtsDegraded"),
        ProxyUpstream::Llm => DetectionRule::alert("LlmDegraded"),
        ProxyUpstream::Address(_) => PROXY.detection.rule(),
    }
}

fn validate(validator: &mut Validator<'_>, entry: &KindEntry<'_>) -> Option<FaultSpec> {
    let context = entry.context;
    let span = entry.span;
    let proxy = validator.proxy(entry.raw, span, context.target, context.allow_hosts)?;
    let listen_missing = match proxy.upstream {
        ProxyUpstream::Tts => context.chaos.tts_listen.is_none().then_some("tts_listen"),
        ProxyUpstream::Llm => context.chaos.llm_listen.is_none().then_some("llm_listen"),
        ProxyUpstream::Address(_) => None,
    };
    let external = matches!(context.target, Target::External(_));
    if let (true, Some(key)) = (external, listen_missing) {
        validator.error(
            span.clone(),
            format!(
                "a proxy in front of a stand-in, against an external fleet, needs [chaos] {key} = \"127.0.0.1:PORT\": the proxy listens there and the fleet must be pointed at it"
            ),
        );
    }
    Some(FaultSpec::Proxy(proxy))
}

impl Validator<'_> {
    fn proxy(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        target: &Target,
        allow_hosts: &[String],
    ) -> Option<ProxyFault> {
        let upstream = self.proxy_upstream(raw, span, allow_hosts)?;
        let listen = self.proxy_listen(raw, span, &upstream);
        let toxics = self.proxy_toxics(raw)?;
        if toxics.latency.is_zero()
            && toxics.jitter.is_zero()
            && toxics.bandwidth.is_none()
            && !toxics.stall
            && !toxics.reset
            && toxics.slice.is_none()
            && !toxics.down
        {
            self.error(
                span.clone(),
                "proxy needs at least one toxic: latency, jitter, bandwidth, stall, reset, slice_size or down",
            );
            return None;
        }
        let _ = target;
        Some(ProxyFault {
            upstream,
            listen,
            toxics,
        })
    }

    /// `upstream`: a stand-in (`tts`, `llm`) or a `host:port` whose host is on
    /// `allow_hosts`.
    fn proxy_upstream(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        allow_hosts: &[String],
    ) -> Option<ProxyUpstream> {
        let Some(upstream_text) = &raw.upstream else {
            self.error(
                span.clone(),
                r#"proxy needs upstream = "tts", "llm" or "host:port" (the dependency it stands in front of)"#,
            );
            return None;
        };
        match upstream_text.get_ref().trim() {
            "tts" => Some(ProxyUpstream::Tts),
            "llm" => Some(ProxyUpstream::Llm),
            address => {
                match split_host_port(address) {
                    Some((host, _)) if host_in(allow_hosts, host) => {
                        Some(ProxyUpstream::Address(address.to_owned()))
                    }
                    Some((host, _)) => {
                        self.error(
                        upstream_text.span(),
                        format!("upstream host {host:?} is not in allow_hosts; add it there to proxy it"),
                    );
                        None
                    }
                    None => {
                        self.error(
                        upstream_text.span(),
                        format!(r#"upstream: expected "tts", "llm" or "host:port", found {address:?}"#),
                    );
                        None
                    }
                }
            }
        }
    }

    /// `listen`: needed in front of `host:port` (the fleet must be pointed at the proxy),
    /// refused in front of a stand-in (the proxy takes the stand-in's address).
    fn proxy_listen(
        &mut self,
        raw: &RawFault,
        span: &std::ops::Range<usize>,
        upstream: &ProxyUpstream,
    ) -> Option<SocketAddr> {
        let listen = raw
            .listen
            .as_ref()
            .and_then(|listen| self.listen_address(listen, "listen"));
        if matches!(upstream, ProxyUpstream::Address(_)) && listen.is_none() && raw.listen.is_none()
        {
            self.error(
                span.clone(),
                "a proxy in front of host:port needs listen = \"127.0.0.1:PORT\": the fleet must be pointed at the proxy",
            );
        }
        if !matches!(upstream, ProxyUpstream::Address(_))
            && let Some(listen) = &raw.listen
        {
            self.error(
                listen.span(),
                "a proxy in front of a stand-in takes the stand-in's address (the embedded fleet is pointed at it; an external fleet at [chaos] tts_listen / llm_listen); drop listen",
            );
        }
        listen
    }

    /// The toxics as given: durations (zero when not given), a byte rate, slices (a size,
    /// and a delay only with one), flags, and the share of connections affected (all when
    /// not given).
    fn proxy_toxics(&mut self, raw: &RawFault) -> Option<ProxyToxicsSpec> {
        let duration = |validator: &mut Self, value: Option<&RawValue>, key: &str| match value {
            Some(value) => validator.duration(value, key, Zero::Allowed),
            None => Some(Duration::ZERO),
        };
        let latency = duration(self, raw.latency.as_ref(), "latency")?;
        let jitter = duration(self, raw.jitter.as_ref(), "jitter")?;
        let bandwidth = match &raw.bandwidth {
            Some(value) => Some(self.byte_rate(value, "bandwidth")?),
            None => None,
        };
        let slice = match (&raw.slice_size, &raw.slice_delay) {
            (Some(size), delay) => {
                let size = usize::try_from(self.ranged(size, "slice_size", 1..=1 << 20)?).ok()?;
                let delay = duration(self, delay.as_ref(), "slice_delay")?;
                Some((size, delay))
            }
            (None, Some(delay)) => {
                self.error(delay.span(), "slice_delay needs slice_size");
                return None;
            }
            (None, None) => None,
        };
        let toxicity = match &raw.toxicity {
            Some(value) => self.fraction(value, "toxicity")?,
            None => 1.0,
        };
        let flag =
            |value: &Option<Spanned<bool>>| value.as_ref().is_some_and(|flag| *flag.get_ref());
        Some(ProxyToxicsSpec {
            latency,
            jitter,
            bandwidth,
            stall: flag(&raw.stall),
            reset: flag(&raw.reset),
            slice,
            down: flag(&raw.down),
            toxicity,
        })
    }
}

/// `host:port` or `[v6]:port` with a numeric port.
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|port| *port != 0)?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

/// `voxsoak plan`'s line.
pub(super) fn describe(proxy: &ProxyFault) -> String {
    let mut toxics = Vec::new();
    let t = &proxy.toxics;
    if !t.latency.is_zero() || !t.jitter.is_zero() {
        toxics.push(format!(
            "latency {} ± {}",
            format_duration(t.latency),
            format_duration(t.jitter)
        ));
    }
    if let Some(bandwidth) = t.bandwidth {
        toxics.push(format!("bandwidth {}/s", format_byte_size(bandwidth)));
    }
    if let Some((size, delay)) = t.slice {
        toxics.push(format!(
            "slices of {size} B every {}",
            format_duration(delay)
        ));
    }
    for (on, name) in [(t.stall, "stall"), (t.reset, "reset"), (t.down, "down")] {
        if on {
            toxics.push(name.to_owned());
        }
    }
    let listen = proxy
        .listen
        .map_or(String::new(), |listen| format!(" (listening on {listen})"));
    format!(
        "a proxy in front of {}{listen}: {} for {:.0}% of connections",
        proxy.upstream,
        toxics.join(", "),
        t.toxicity * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn host_ports_split() {
        assert_eq!(split_host_port("127.0.0.1:5432"), Some(("127.0.0.1", 5432)));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(split_host_port("h:0"), None);
    }
}
