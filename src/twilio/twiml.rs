//! TwiML for bidirectional streams: `<Response><Connect><Stream url="…">` with
//! `<Parameter name value/>` children, which become the stream's `customParameters`.

use std::collections::BTreeMap;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Where a call's media goes, from the TwiML a voice webhook answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamTarget {
    /// The stream URL, without a query string (Twilio does not pass one; data goes in
    /// parameters).
    pub url: String,
    pub parameters: BTreeMap<String, String>,
}

/// TwiML voxsoak cannot follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TwimlError {
    #[error("the answer is not well-formed XML: {0}")]
    NotXml(String),
    #[error("the TwiML has <Start><Stream> (a one-way stream); voxsoak needs <Connect><Stream>")]
    OneWayStream,
    #[error("the TwiML has no <Response><Connect><Stream>")]
    NoConnectStream,
    #[error("<Stream> has no url attribute")]
    MissingUrl,
    #[error("<Stream url={0:?}> is not a ws:// or wss:// URL")]
    NotWebSocketUrl(String),
}

/// The TwiML a fleet answers a voice webhook with to connect the call to its stream.
pub fn connect_stream(url: &str, parameters: &BTreeMap<String, String>) -> String {
    let mut xml =
        String::from(r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url=""#);
    push_attribute_value(&mut xml, url);
    xml.push_str("\">");
    for (name, value) in parameters {
        xml.push_str("<Parameter name=\"");
        push_attribute_value(&mut xml, name);
        xml.push_str("\" value=\"");
        push_attribute_value(&mut xml, value);
        xml.push_str("\"/>");
    }
    xml.push_str("</Stream></Connect></Response>");
    xml
}

/// `text` escaped for a quoted attribute value. A tab, newline or carriage return written
/// as it is would be read back as a space (attribute-value normalization), so they are
/// written as character references.
fn push_attribute_value(xml: &mut String, text: &str) {
    for character in quick_xml::escape::escape(text).chars() {
        match character {
            '\t' => xml.push_str("&#9;"),
            '\n' => xml.push_str("&#10;"),
            '\r' => xml.push_str("&#13;"),
            other => xml.push(other),
        }
    }
}

/// Finds the `<Connect><Stream>` of a webhook's TwiML answer.
pub fn parse_connect_stream(xml: &str) -> Result<StreamTarget, TwimlError> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut target: Option<StreamTarget> = None;
    let mut saw_one_way = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|error| TwimlError::NotXml(error.to_string()))?;
        match event {
            Event::Start(element) => {
                let name = element_name(&element);
                visit(&name, &element, &path, &mut target, &mut saw_one_way)?;
                path.push(name);
            }
            Event::Empty(element) => {
                let name = element_name(&element);
                visit(&name, &element, &path, &mut target, &mut saw_one_way)?;
            }
            Event::End(_) => {
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    match target {
        Some(target) => Ok(target),
        None if saw_one_way => Err(TwimlError::OneWayStream),
        None => Err(TwimlError::NoConnectStream),
    }
}

fn element_name(element: &BytesStart<'_>) -> String {
    element.name().0.to_string()
}

fn attribute(element: &BytesStart<'_>, wanted: &str) -> Result<Option<String>, TwimlError> {
    for attribute in element.attributes() {
        let attribute = attribute.map_err(|error| TwimlError::NotXml(error.to_string()))?;
        if attribute.key.0 == wanted {
            let value = attribute
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|error| TwimlError::NotXml(error.to_string()))?;
            return Ok(Some(value.into_owned()));
        }
    }
    Ok(None)
}

fn visit(
    name: &str,
    element: &BytesStart<'_>,
    path: &[String],
    target: &mut Option<StreamTarget>,
    saw_one_way: &mut bool,
) -> Result<(), TwimlError> {
    let parents: Vec<&str> = path.iter().map(String::as_str).collect();
    match (name, parents.as_slice()) {
        ("Stream", ["Response", "Connect"]) if target.is_none() => {
            let url = attribute(element, "url")?.ok_or(TwimlError::MissingUrl)?;
            let lower = url.to_ascii_lowercase();
            if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
                return Err(TwimlError::NotWebSocketUrl(url));
            }
            let url = match url.split_once('?') {
                Some((base, _query)) => base.to_string(),
                None => url,
            };
            *target = Some(StreamTarget {
                url,
                parameters: BTreeMap::new(),
            });
        }
        ("Stream", ["Response", "Start"]) => *saw_one_way = true,
        ("Parameter", ["Response", "Connect", "Stream"]) => {
            if let (Some(target), Some(name)) = (target.as_mut(), attribute(element, "name")?) {
                let value = attribute(element, "value")?.unwrap_or_default();
                target.parameters.insert(name, value);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_connect_stream_with_parameters() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <Response>
              <Say>Connecting you</Say>
              <Connect>
                <Stream url="wss://fleet.example/stream?token=abc">
                  <Parameter name="tenant" value="acme &amp; co"/>
                  <Parameter name="CallSid" value="CA1"/>
                </Stream>
              </Connect>
            </Response>"#;
        let target = parse_connect_stream(xml).unwrap();
        assert_eq!(target.url, "wss://fleet.example/stream");
        assert_eq!(target.parameters["tenant"], "acme & co");
        assert_eq!(target.parameters["CallSid"], "CA1");
    }

    #[test]
    fn round_trips_with_escaping() {
        let parameters = BTreeMap::from([
            ("quote\"d".to_string(), "<tag> & 'apostrophe'".to_string()),
            ("plain".to_string(), String::new()),
        ]);
        let xml = connect_stream("ws://127.0.0.1:8080/stream", &parameters);
        let target = parse_connect_stream(&xml).unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:8080/stream");
        assert_eq!(target.parameters, parameters);
    }

    /// Found by the fuzz target `twiml`: a parameter read from `&#9;` or `&#10;` came back
    /// as a space once written again, because a literal tab or newline in an attribute is
    /// read as a space (XML attribute-value normalization).
    #[test]
    fn tabs_and_newlines_in_parameters_survive_the_round_trip() {
        let parameters = BTreeMap::from([
            ("lines".to_string(), "a\tb\nc\r\nd\re".to_string()),
            ("tab\tname".to_string(), " ".to_string()),
        ]);
        let xml = connect_stream("ws://127.0.0.1:8080/str\team", &parameters);
        let target = parse_connect_stream(&xml).unwrap();
        assert_eq!(target.url, "ws://127.0.0.1:8080/str\team");
        assert_eq!(target.parameters, parameters);

        let xml = r#"<Response><Connect><Stream url="wss://x/s">
            <Parameter name="n" value="a&#9;b&#10;c&#13;d&#xA;e
f"/></Stream></Connect></Response>"#;
        let target = parse_connect_stream(xml).unwrap();
        assert_eq!(target.parameters["n"], "a\tb\nc\rd\ne f");
        let again = connect_stream(&target.url, &target.parameters);
        assert_eq!(parse_connect_stream(&again), Ok(target));
    }

    #[test]
    fn refuses_what_it_cannot_follow() {
        assert_eq!(
            parse_connect_stream(
                r#"<Response><Start><Stream url="wss://x/s"/></Start></Response>"#
            ),
            Err(TwimlError::OneWayStream)
        );
        assert_eq!(
            parse_connect_stream("<Response><Say>hi</Say></Response>"),
            Err(TwimlError::NoConnectStream)
        );
        assert_eq!(
            parse_connect_stream("<Response><Connect><Stream/></Connect></Response>"),
            Err(TwimlError::MissingUrl)
        );
        assert!(matches!(
            parse_connect_stream(
                r#"<Response><Connect><Stream url="https://x/s"/></Connect></Response>"#
            ),
            Err(TwimlError::NotWebSocketUrl(_))
        ));
        for garbage in [
            "",
            "not xml at all",
            "<Response><Connect>",
            "<<<>>>",
            "<a b='1' b='2'/>",
            "\u{0}",
        ] {
            assert!(parse_connect_stream(garbage).is_err(), "{garbage:?}");
        }
    }
}
