//! A flat walk over the XML inside Office files. quick-xml reads events
//! without recursion and never expands entities a document declares, so
//! the billion-laughs attack has nothing to expand; a document type
//! declaration is refused outright all the same, since no Office part
//! has one and a file that does is hostile or broken.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::QName;
use quick_xml::reader::Reader;

use crate::error::ParseError;

/// One step of the walk. Names are local (`w:p` is `p`), which is all the
/// Office formats need to tell their elements apart.
#[derive(Debug)]
pub(crate) enum XmlEvent<'e> {
    Start(Element<'e>),
    End(&'e str),
    Text(Cow<'e, str>),
}

#[derive(Debug)]
pub(crate) struct Element<'e> {
    pub name: &'e str,
    start: &'e BytesStart<'e>,
}

impl Element<'_> {
    /// An attribute's unescaped value, by its local name.
    pub fn attribute(&self, local: &str) -> Option<String> {
        self.find_attribute(|key| key.local_name().into_inner() == local)
    }

    /// An attribute's unescaped value, by its local name, among the
    /// attributes that have a namespace prefix (`r:id`, not `id`).
    pub fn prefixed_attribute(&self, local: &str) -> Option<String> {
        self.find_attribute(|key| {
            key.into_inner().contains(':') && key.local_name().into_inner() == local
        })
    }

    fn find_attribute(&self, wanted: impl Fn(QName<'_>) -> bool) -> Option<String> {
        self.start.attributes().flatten().find_map(|attribute| {
            wanted(attribute.key)
                .then(|| {
                    attribute
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .ok()
                        .map(Cow::into_owned)
                })
                .flatten()
        })
    }
}

/// Walks `bytes` (UTF-8 XML, as Office writes it) and hands every start
/// tag, end tag and piece of text to `visit`. An empty element comes as a
/// start and an end.
pub(crate) fn walk(
    bytes: &[u8],
    format: &'static str,
    mut visit: impl FnMut(XmlEvent<'_>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    let malformed = |message: String| ParseError::Malformed { format, message };
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes))
        .map_err(|e| malformed(format!("XML that is not UTF-8 ({e})")))?;
    let mut reader = Reader::from_str(text);
    loop {
        let event = reader.read_event().map_err(|e| {
            malformed(format!(
                "bad XML at byte {} ({e})",
                reader.buffer_position()
            ))
        })?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = start.local_name().into_inner();
                visit(XmlEvent::Start(Element { name, start }))?;
                if matches!(event, Event::Empty(_)) {
                    visit(XmlEvent::End(name))?;
                }
            }
            Event::End(end) => {
                let name = end.local_name().into_inner();
                visit(XmlEvent::End(name))?;
            }
            Event::Text(t) => visit(XmlEvent::Text(t.xml10_content()))?,
            Event::CData(t) => visit(XmlEvent::Text(t.xml10_content()))?,
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = reference.xml10_content();
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| malformed(format!("an unknown entity &{name};")))?
                            .to_string()
                    }
                    Err(e) => return Err(malformed(format!("a bad character reference ({e})"))),
                };
                visit(XmlEvent::Text(Cow::Owned(resolved)))?;
            }
            Event::DocType(_) => {
                return Err(ParseError::TooComplex(
                    "XML with a document type declaration, which Office files never have"
                        .to_string(),
                ));
            }
            Event::Eof => return Ok(()),
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(xml: &str) -> Result<String, ParseError> {
        let mut out = String::new();
        walk(xml.as_bytes(), "test", |event| {
            match event {
                XmlEvent::Start(e) => out.push_str(&format!("<{}>", e.name)),
                XmlEvent::End(name) => out.push_str(&format!("</{name}>")),
                XmlEvent::Text(t) => out.push_str(&t),
            }
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn walks_names_text_and_references() {
        assert_eq!(
            texts(r#"<?xml version="1.0"?><w:p a="1"><w:t>a &amp; b &#x41;</w:t><w:br/></w:p>"#)
                .unwrap(),
            "<p><t>a & b A</t><br></br></p>"
        );
    }

    #[test]
    fn a_billion_laughs_is_refused() {
        let xml = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<w:document><w:t>&lol2;</w:t></w:document>"#;
        assert!(matches!(texts(xml), Err(ParseError::TooComplex(_))));
        assert!(matches!(
            texts("<w:t>&lol2;</w:t>"),
            Err(ParseError::Malformed { .. })
        ));
    }
}
