//! The zip container of the Office formats (docx, xlsx, pptx, ods), opened
//! without trusting it. A zip bomb is a small file whose entries unpack to
//! gigabytes; every entry's unpacked size is in the central directory, and
//! the zip crate fails a read past an entry's declared size, so adding the
//! declared sizes up before reading anything bounds what unpacking can
//! cost. Entries are counted too, since each costs a header's parse.

use std::io::{Cursor, Read};

use zip::ZipArchive;

use crate::error::ParseError;

/// Entries one archive may hold; real documents have tens to a few
/// thousand (one per slide, sheet, image and relationship file).
pub const MAX_ARCHIVE_ENTRIES: usize = 10_000;

/// How far an archive may unpack, in total: 64 times the file, at least
/// 16 MiB and at most 512 MiB. Office XML compresses about tenfold, so a
/// real file stays far inside.
pub fn max_unpacked_bytes(file_len: usize) -> u64 {
    (file_len as u64)
        .saturating_mul(64)
        .clamp(16 << 20, 512 << 20)
}

pub(crate) struct Archive<'a> {
    zip: ZipArchive<Cursor<&'a [u8]>>,
    format: &'static str,
}

impl<'a> Archive<'a> {
    /// Opens the archive and refuses it if it holds too many entries or
    /// declares more unpacked bytes than [`max_unpacked_bytes`].
    pub fn open(bytes: &'a [u8], format: &'static str) -> Result<Self, ParseError> {
        let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(|e| ParseError::Malformed {
            format,
            message: format!("not a readable zip archive ({e})"),
        })?;
        if zip.len() > MAX_ARCHIVE_ENTRIES {
            return Err(ParseError::TooComplex(format!(
                "the archive holds {} entries, more than {MAX_ARCHIVE_ENTRIES}",
                zip.len()
            )));
        }
        let budget = max_unpacked_bytes(bytes.len());
        let mut declared: u64 = 0;
        for index in 0..zip.len() {
            let entry = zip.by_index_raw(index).map_err(|e| ParseError::Malformed {
                format,
                message: format!("a damaged zip entry ({e})"),
            })?;
            declared = declared.saturating_add(entry.size());
            if declared > budget {
                return Err(ParseError::ExpansionLimit(format!(
                    "the archive unpacks to more than {} MiB",
                    budget >> 20
                )));
            }
        }
        Ok(Self { zip, format })
    }

    /// The names of its entries, in the archive's order.
    pub fn names(&self) -> Vec<String> {
        self.zip
            .file_names()
            .filter_map(|name| name.ok().map(|n| n.into_owned()))
            .collect()
    }

    /// One entry's bytes, or `None` if the archive has no such entry.
    pub fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, ParseError> {
        let format = self.format;
        let mut entry = match self.zip.by_name(name) {
            Ok(entry) => entry,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => {
                return Err(ParseError::Malformed {
                    format,
                    message: format!("cannot read {name} ({e})"),
                });
            }
        };
        let mut bytes = Vec::with_capacity(entry.size().min(64 << 20) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| ParseError::Malformed {
                format,
                message: format!("cannot unpack {name} ({e})"),
            })?;
        Ok(Some(bytes))
    }

    /// An entry that must be there.
    pub fn require(&mut self, name: &str) -> Result<Vec<u8>, ParseError> {
        let format = self.format;
        self.read(name)?.ok_or_else(|| ParseError::Malformed {
            format,
            message: format!("{name} is missing"),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use zip::write::SimpleFileOptions;

    use super::*;

    /// A zip of the given entries, deflated; shared by the format tests.
    pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in entries {
            writer
                .start_file(*name, SimpleFileOptions::default())
                .unwrap();
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    #[test]
    fn entries_are_read_by_name() {
        let bytes = zip_of(&[("a.xml", b"<a/>"), ("b/c.xml", b"<c/>")]);
        let mut archive = Archive::open(&bytes, "test").unwrap();
        assert_eq!(archive.names(), vec!["a.xml", "b/c.xml"]);
        assert_eq!(archive.read("b/c.xml").unwrap().unwrap(), b"<c/>");
        assert!(archive.read("missing").unwrap().is_none());
        assert!(archive.require("missing").is_err());
    }

    #[test]
    fn a_zip_bomb_is_refused_before_it_unpacks() {
        let zeros = vec![0u8; 40 << 20];
        let bytes = zip_of(&[("word/document.xml", &zeros)]);
        assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
        assert!(matches!(
            Archive::open(&bytes, "test"),
            Err(ParseError::ExpansionLimit(_))
        ));
        assert!(matches!(
            Archive::open(b"PK\x03\x04 not really", "test"),
            Err(ParseError::Malformed { .. })
        ));
    }
}
