//! PowerPoint presentations (`.pptx`): each slide's text and its speaker
//! notes, one part per slide in the order the presentation shows them
//! (`ppt/presentation.xml`'s slide list, not the file names, which keep
//! their numbers when slides are moved).

use std::collections::HashMap;

use super::archive::Archive;
use super::docx::core_title;
use super::layout::Part;
use super::xml::{XmlEvent, walk};
use crate::domain::ChunkLocation;
use crate::error::ParseError;

const FORMAT: &str = "PPTX";

pub(crate) fn pptx_to_parts(bytes: &[u8]) -> Result<(Option<String>, Vec<Part>), ParseError> {
    let mut archive = Archive::open(bytes, FORMAT)?;
    let slides = slide_paths(&mut archive)?;
    let mut parts = Vec::with_capacity(slides.len());
    for (number, path) in slides.iter().enumerate() {
        let slide = archive.require(path)?;
        let mut text = drawing_text(&slide)?;
        if let Some(notes_path) = notes_path(&mut archive, path)?
            && let Some(notes) = archive.read(&notes_path)?
        {
            let notes = drawing_text(&notes)?;
            if !notes.trim().is_empty() {
                text.push_str("\n\nNotes: ");
                text.push_str(&notes);
            }
        }
        parts.push(Part::prose(ChunkLocation::slide(number as u32 + 1), text));
    }
    let title = match archive.read("docProps/core.xml")? {
        Some(core) => core_title(&core, FORMAT)?,
        None => None,
    };
    Ok((title, parts))
}

/// The slides' entry names in show order.
fn slide_paths(archive: &mut Archive<'_>) -> Result<Vec<String>, ParseError> {
    let presentation = archive.require("ppt/presentation.xml")?;
    let mut ids = Vec::new();
    walk(&presentation, FORMAT, |event| {
        if let XmlEvent::Start(e) = event
            && e.name == "sldId"
            && let Some(id) = e.prefixed_attribute("id")
        {
            ids.push(id);
        }
        Ok(())
    })?;
    let targets = relationships(archive, "ppt/_rels/presentation.xml.rels")?;
    let mut paths: Vec<String> = ids
        .iter()
        .filter_map(|id| targets.get(id))
        .map(|(_, target)| resolve("ppt", target))
        .collect();
    if paths.is_empty() {
        // No slide list: the file names' numbers are the next best order.
        let mut named: Vec<(u32, String)> = archive
            .names()
            .into_iter()
            .filter_map(|name| {
                let number = name
                    .strip_prefix("ppt/slides/slide")?
                    .strip_suffix(".xml")?
                    .parse()
                    .ok()?;
                Some((number, name))
            })
            .collect();
        named.sort();
        paths = named.into_iter().map(|(_, name)| name).collect();
    }
    Ok(paths)
}

/// A slide's notes page, from the slide's relationships.
fn notes_path(archive: &mut Archive<'_>, slide: &str) -> Result<Option<String>, ParseError> {
    let (folder, file) = slide.rsplit_once('/').unwrap_or(("", slide));
    let rels = relationships(archive, &format!("{folder}/_rels/{file}.rels"))?;
    Ok(rels
        .values()
        .find(|(kind, _)| kind.ends_with("/notesSlide"))
        .map(|(_, target)| resolve(folder, target)))
}

/// A relationships part: id to (type, target). A missing part has none.
fn relationships(
    archive: &mut Archive<'_>,
    path: &str,
) -> Result<HashMap<String, (String, String)>, ParseError> {
    let mut found = HashMap::new();
    let Some(xml) = archive.read(path)? else {
        return Ok(found);
    };
    walk(&xml, FORMAT, |event| {
        if let XmlEvent::Start(e) = event
            && e.name == "Relationship"
            && let (Some(id), Some(target)) = (e.attribute("Id"), e.attribute("Target"))
        {
            found.insert(id, (e.attribute("Type").unwrap_or_default(), target));
        }
        Ok(())
    })?;
    Ok(found)
}

/// A relationship target relative to `folder` (or absolute from the
/// package root), as an entry name.
fn resolve(folder: &str, target: &str) -> String {
    let mut segments: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        folder.split('/').filter(|s| !s.is_empty()).collect()
    };
    for segment in target.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    segments.join("/")
}

/// The text of a slide or notes page: one line per paragraph (`a:p`),
/// leaving out fields (`a:fld`: slide numbers, dates), which are the
/// same on every slide.
fn drawing_text(xml: &[u8]) -> Result<String, ParseError> {
    let mut text = String::new();
    let mut line = String::new();
    let mut in_text = false;
    let mut in_field = 0usize;
    walk(xml, FORMAT, |event| {
        match event {
            XmlEvent::Start(e) => match e.name {
                "t" => in_text = true,
                "fld" => in_field += 1,
                "br" => line.push('\n'),
                _ => {}
            },
            XmlEvent::End(name) => match name {
                "t" => in_text = false,
                "fld" => in_field = in_field.saturating_sub(1),
                "p" => {
                    let finished = line.trim();
                    if !finished.is_empty() {
                        text.push_str(finished);
                        text.push('\n');
                    }
                    line.clear();
                }
                _ => {}
            },
            XmlEvent::Text(t) if in_text && in_field == 0 => line.push_str(&t),
            XmlEvent::Text(_) => {}
        }
        Ok(())
    })?;
    Ok(text.trim_end().to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::archive::tests::zip_of;
    use super::*;

    fn shapes(paragraphs: &[&str]) -> String {
        let paragraphs: String = paragraphs
            .iter()
            .map(|p| format!("<a:p><a:r><a:t>{p}</a:t></a:r></a:p>"))
            .collect();
        format!(
            r#"<p:sld xmlns:a="a" xmlns:p="p"><p:cSld><p:spTree><p:sp><p:txBody>{paragraphs}<a:p><a:fld type="slidenum"><a:t>7</a:t></a:fld></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>"#
        )
    }

    /// A `.pptx` of slides, each its paragraphs and optional notes. The
    /// files are numbered in reverse of the show order, as after moving
    /// slides, so the order must come from the slide list.
    pub(crate) fn pptx_of(slides: &[(&[&str], Option<&str>)]) -> Vec<u8> {
        let count = slides.len();
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let mut list = String::new();
        let mut rels = String::new();
        for (i, (paragraphs, notes)) in slides.iter().enumerate() {
            let file = count - i;
            list.push_str(&format!(
                r#"<p:sldId id="{}" r:id="rId{}"/>"#,
                256 + i,
                i + 1
            ));
            rels.push_str(&format!(
                r#"<Relationship Id="rId{}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide" Target="slides/slide{file}.xml"/>"#,
                i + 1
            ));
            entries.push((
                format!("ppt/slides/slide{file}.xml"),
                shapes(paragraphs).into_bytes(),
            ));
            if let Some(notes) = notes {
                entries.push((
                    format!("ppt/slides/_rels/slide{file}.xml.rels"),
                    format!(r#"<Relationships><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/notesSlide" Target="../notesSlides/notesSlide{file}.xml"/></Relationships>"#).into_bytes(),
                ));
                entries.push((
                    format!("ppt/notesSlides/notesSlide{file}.xml"),
                    shapes(&[notes]).into_bytes(),
                ));
            }
        }
        entries.push((
            "ppt/presentation.xml".into(),
            format!(r#"<p:presentation xmlns:p="p" xmlns:r="r"><p:sldIdLst>{list}</p:sldIdLst></p:presentation>"#).into_bytes(),
        ));
        entries.push((
            "ppt/_rels/presentation.xml.rels".into(),
            format!("<Relationships>{rels}</Relationships>").into_bytes(),
        ));
        let borrowed: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(name, data)| (name.as_str(), data.as_slice()))
            .collect();
        zip_of(&borrowed)
    }

    #[test]
    fn slides_in_show_order_with_their_notes() {
        let bytes = pptx_of(&[
            (
                &["Quarterly review", "Revenue grew"],
                Some("Mention the new office"),
            ),
            (&["Next steps"], None),
        ]);
        let (_, parts) = pptx_to_parts(&bytes).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].location, ChunkLocation::slide(1));
        assert_eq!(
            parts[0].text,
            "Quarterly review\nRevenue grew\n\nNotes: Mention the new office"
        );
        assert_eq!(parts[1].location, ChunkLocation::slide(2));
        assert_eq!(parts[1].text, "Next steps");
    }

    #[test]
    fn targets_resolve_against_their_folder() {
        assert_eq!(resolve("ppt", "slides/slide1.xml"), "ppt/slides/slide1.xml");
        assert_eq!(
            resolve("ppt/slides", "../notesSlides/n1.xml"),
            "ppt/notesSlides/n1.xml"
        );
        assert_eq!(resolve("ppt", "/ppt/slides/s.xml"), "ppt/slides/s.xml");
    }
}
