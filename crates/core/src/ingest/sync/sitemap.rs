//! Sitemaps as a source: the pages a sitemap (or a sitemap index, one
//! level deep) lists, each versioned by its `lastmod`, fetched through the
//! address-checking [`UrlFetcher`], so no sitemap can point a job at the
//! service's own network.

use std::io::Read;

use async_trait::async_trait;

use super::{SourceItem, SourceObject, SyncSource};
use crate::error::{ParseError, RagError};
use crate::fetch::UrlFetcher;
use crate::parse::xml::XmlEvent;

/// The sitemap protocol's own limit on the URLs of one file, and on the
/// sitemaps of an index.
const MAX_URLS: usize = 50_000;
const MAX_SITEMAPS: usize = 100;
/// A gzipped sitemap may unpack to at most this (the protocol allows 50 MB).
const MAX_UNPACKED_BYTES: u64 = 50 * 1024 * 1024;

pub struct SitemapSource {
    fetcher: UrlFetcher,
}

impl SitemapSource {
    pub fn new(fetcher: UrlFetcher) -> Self {
        Self { fetcher }
    }

    async fn read(&self, url: &str) -> Result<Parsed, RagError> {
        let fetched = self.fetcher.fetch(url).await?;
        let bytes = fetched.bytes;
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut unpacked = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .take(MAX_UNPACKED_BYTES + 1)
                .read_to_end(&mut unpacked)
                .map_err(|e| RagError::invalid(format!("the sitemap {url} is not gzip: {e}")))?;
            if unpacked.len() as u64 > MAX_UNPACKED_BYTES {
                return Err(RagError::invalid(format!(
                    "the sitemap {url} unpacks to more than {MAX_UNPACKED_BYTES} bytes"
                )));
            }
            String::from_utf8_lossy(&unpacked).into_owned()
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        parse(&text).map_err(|e| RagError::invalid(format!("the sitemap {url}: {e}")))
    }
}

/// What one sitemap file holds.
#[derive(Debug, Default, PartialEq)]
struct Parsed {
    /// `<urlset>`: pages with their `lastmod`.
    pages: Vec<SourceItem>,
    /// `<sitemapindex>`: further sitemaps.
    sitemaps: Vec<String>,
}

fn parse(xml: &str) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut index = false;
    let (mut loc, mut lastmod) = (String::new(), String::new());
    let mut field: Option<&'static str> = None;
    // The walk refuses document type declarations (entity expansion) and
    // resolves only the predefined entities.
    crate::parse::xml::walk(xml.as_bytes(), "sitemap", |event| {
        match event {
            XmlEvent::Start(element) => match element.name {
                "sitemapindex" => index = true,
                "url" | "sitemap" => (loc, lastmod) = (String::new(), String::new()),
                "loc" => field = Some("loc"),
                "lastmod" => field = Some("lastmod"),
                _ => field = None,
            },
            XmlEvent::Text(text) => match field {
                Some("loc") => loc.push_str(&text),
                Some("lastmod") => lastmod.push_str(&text),
                _ => {}
            },
            XmlEvent::End(name) => {
                field = None;
                let url = loc.trim().to_string();
                match name {
                    "url" if !index && !url.is_empty() => parsed.pages.push(SourceItem {
                        key: url,
                        version: lastmod.trim().to_string(),
                    }),
                    "sitemap" if index && !url.is_empty() => parsed.sitemaps.push(url),
                    _ => {}
                }
                if parsed.pages.len() > MAX_URLS || parsed.sitemaps.len() > MAX_SITEMAPS {
                    return Err(ParseError::TooComplex(format!(
                        "more than {MAX_URLS} pages or {MAX_SITEMAPS} sitemaps"
                    )));
                }
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(parsed)
}

#[async_trait]
impl SyncSource for SitemapSource {
    async fn list(&self, location: &str) -> Result<Vec<SourceItem>, RagError> {
        let top = self.read(location).await?;
        let mut pages = top.pages;
        for sitemap in top.sitemaps {
            // One level: an index of indexes is not followed further.
            pages.extend(self.read(&sitemap).await?.pages);
            if pages.len() > MAX_URLS {
                return Err(RagError::invalid(format!(
                    "the sitemap {location} lists more than {MAX_URLS} pages"
                )));
            }
        }
        pages.sort_by(|a, b| a.key.cmp(&b.key));
        pages.dedup_by(|a, b| a.key == b.key);
        Ok(pages)
    }

    async fn fetch(&self, key: &str) -> Result<SourceObject, RagError> {
        let fetched = self.fetcher.fetch(key).await?;
        Ok(SourceObject {
            bytes: fetched.bytes,
            content_type: fetched.content_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_come_with_their_lastmod_and_indexes_with_their_sitemaps() {
        let urlset = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>https://example.com/a.html</loc><lastmod>2026-11-01</lastmod></url>
  <url><loc> https://example.com/b.html?x=1&amp;y=2 </loc></url>
</urlset>"#;
        let parsed = parse(urlset).unwrap();
        assert_eq!(
            parsed.pages,
            vec![
                SourceItem {
                    key: "https://example.com/a.html".into(),
                    version: "2026-11-01".into()
                },
                SourceItem {
                    key: "https://example.com/b.html?x=1&y=2".into(),
                    version: String::new()
                },
            ]
        );
        let index = r#"<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>https://example.com/one.xml</loc><lastmod>2026-11-01</lastmod></sitemap>
</sitemapindex>"#;
        assert_eq!(
            parse(index).unwrap().sitemaps,
            vec!["https://example.com/one.xml".to_string()]
        );
        assert!(parse("<!DOCTYPE x [<!ENTITY a 'b'>]><urlset/>").is_err());
    }
}
