//! Spreadsheets (`.xlsx`, `.xls`, `.ods` through calamine) and delimited
//! text (`.csv`, `.tsv` through the csv crate), each sheet a table part
//! named after its sheet. A sheet's size is checked as it is read: an
//! `.xlsx` sheet streams cell by cell and stops at the row limit, so a
//! million-row sheet is refused after reading a fifth of it, not after
//! holding all of it.

use std::io::Cursor;

use calamine::{Data, DataRef, Reader};

use super::archive::Archive;
use super::layout::Part;
use crate::domain::ChunkLocation;
use crate::error::ParseError;

/// Rows one document's tables may hold, over all its sheets.
pub const MAX_TABLE_ROWS: usize = 200_000;
/// Columns one row may span; a cell far to the right would otherwise
/// make every row that wide.
pub const MAX_TABLE_COLUMNS: usize = 1_024;
/// Sheet names are kept to this many characters in chunk metadata.
const MAX_SHEET_NAME_CHARS: usize = 100;

/// Which spreadsheet container the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workbook {
    Xlsx,
    Xls,
    Ods,
}

impl Workbook {
    fn format(self) -> &'static str {
        match self {
            Workbook::Xlsx => "XLSX",
            Workbook::Xls => "XLS",
            Workbook::Ods => "ODS",
        }
    }
}

/// Counts rows against [`MAX_TABLE_ROWS`] across the sheets of one file.
struct RowBudget {
    left: usize,
}

impl RowBudget {
    fn new() -> Self {
        Self {
            left: MAX_TABLE_ROWS,
        }
    }

    fn take(&mut self, rows: usize) -> Result<(), ParseError> {
        self.left = self.left.checked_sub(rows).ok_or_else(too_many_rows)?;
        Ok(())
    }
}

fn too_many_rows() -> ParseError {
    ParseError::TooComplex(format!("the tables hold more than {MAX_TABLE_ROWS} rows"))
}

fn too_many_columns() -> ParseError {
    ParseError::TooComplex(format!("a row spans more than {MAX_TABLE_COLUMNS} columns"))
}

pub(crate) fn workbook_to_parts(bytes: &[u8], workbook: Workbook) -> Result<Vec<Part>, ParseError> {
    let format = workbook.format();
    if workbook != Workbook::Xls {
        Archive::open(bytes, format)?;
    }
    let malformed = |e: &dyn std::fmt::Display| ParseError::Malformed {
        format,
        message: e.to_string(),
    };
    let mut budget = RowBudget::new();
    let mut parts = Vec::new();
    match workbook {
        Workbook::Xlsx => {
            let mut book: calamine::Xlsx<_> =
                calamine::open_workbook_from_rs(Cursor::new(bytes)).map_err(|e| malformed(&e))?;
            for name in book.sheet_names() {
                let rows = xlsx_rows(&mut book, &name, &mut budget, format)?;
                parts.push(sheet_part(&name, rows));
            }
        }
        Workbook::Xls | Workbook::Ods => {
            let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes))
                .map_err(|e| malformed(&e))?;
            for name in book.sheet_names() {
                let range = book.worksheet_range(&name).map_err(|e| malformed(&e))?;
                budget.take(range.height())?;
                if range.width() > MAX_TABLE_COLUMNS {
                    return Err(too_many_columns());
                }
                let rows = range
                    .rows()
                    .map(|row| row.iter().map(data_text).collect())
                    .collect();
                parts.push(sheet_part(&name, rows));
            }
        }
    }
    Ok(parts)
}

/// One `.xlsx` sheet's rows, read cell by cell. Cells arrive in row order;
/// gaps between them are empty cells.
fn xlsx_rows(
    book: &mut calamine::Xlsx<Cursor<&[u8]>>,
    name: &str,
    budget: &mut RowBudget,
    format: &'static str,
) -> Result<Vec<Vec<String>>, ParseError> {
    let malformed = |e: &dyn std::fmt::Display| ParseError::Malformed {
        format,
        message: e.to_string(),
    };
    let mut cells = book
        .worksheet_cells_reader(name)
        .map_err(|e| malformed(&e))?;
    let declared = cells.dimensions();
    if (declared.end.0 as usize).saturating_sub(declared.start.0 as usize) >= MAX_TABLE_ROWS {
        return Err(too_many_rows());
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut current: Option<u32> = None;
    while let Some(cell) = cells.next_cell().map_err(|e| malformed(&e))? {
        let (row, column) = cell.get_position();
        if column as usize >= MAX_TABLE_COLUMNS {
            return Err(too_many_columns());
        }
        let text = data_ref_text(cell.get_value());
        if text.is_empty() {
            continue;
        }
        if current != Some(row) {
            budget.take(1)?;
            rows.push(Vec::new());
            current = Some(row);
        }
        let cells_of_row = rows.last_mut().expect("a row was pushed");
        if cells_of_row.len() <= column as usize {
            cells_of_row.resize(column as usize + 1, String::new());
        }
        cells_of_row[column as usize] = text;
    }
    Ok(rows)
}

fn sheet_part(name: &str, rows: Vec<Vec<String>>) -> Part {
    let name: String = name.chars().take(MAX_SHEET_NAME_CHARS).collect();
    Part::table(ChunkLocation::sheet(name), &rows)
}

fn data_text(cell: &Data) -> String {
    match cell {
        Data::Float(f) => float_text(*f),
        Data::Error(_) | Data::Empty => String::new(),
        other => other.to_string(),
    }
}

fn data_ref_text(cell: &DataRef<'_>) -> String {
    match cell {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => float_text(*f),
        DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::SharedString(s) => s.to_string(),
        DataRef::Bool(b) => b.to_string(),
        DataRef::DateTime(d) => Data::DateTime(*d).to_string(),
        DataRef::Error(_) | DataRef::Empty => String::new(),
    }
}

/// Whole numbers without a trailing `.0`, as a spreadsheet shows them.
fn float_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

/// A CSV or TSV file as one table, its first line the header row.
pub(crate) fn delimited_to_parts(bytes: &[u8], delimiter: u8) -> Result<Vec<Part>, ParseError> {
    let format = if delimiter == b'\t' { "TSV" } else { "CSV" };
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(bytes);
    let mut budget = RowBudget::new();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ParseError::Malformed {
            format,
            message: e.to_string(),
        })?;
        if record.len() > MAX_TABLE_COLUMNS {
            return Err(too_many_columns());
        }
        budget.take(1)?;
        rows.push(record.iter().map(str::to_string).collect());
    }
    Ok(vec![Part::table(ChunkLocation::default(), &rows)])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::archive::tests::zip_of;
    use super::*;

    /// A minimal `.xlsx` whose sheets hold inline strings and numbers.
    pub(crate) fn xlsx_of(sheets: &[(&str, Vec<Vec<String>>)]) -> Vec<u8> {
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let mut listed = String::new();
        let mut rels = String::new();
        for (i, (name, rows)) in sheets.iter().enumerate() {
            let n = i + 1;
            listed.push_str(&format!(
                r#"<sheet name="{name}" sheetId="{n}" r:id="rId{n}"/>"#
            ));
            rels.push_str(&format!(
                r#"<Relationship Id="rId{n}" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet{n}.xml"/>"#
            ));
            entries.push((
                format!("xl/worksheets/sheet{n}.xml"),
                sheet_xml(rows).into_bytes(),
            ));
        }
        entries.push((
            "xl/workbook.xml".into(),
            format!(r#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets>{listed}</sheets></workbook>"#).into_bytes(),
        ));
        entries.push((
            "xl/_rels/workbook.xml.rels".into(),
            format!(r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">{rels}</Relationships>"#).into_bytes(),
        ));
        entries.push((
            "_rels/.rels".into(),
            br#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_vec(),
        ));
        entries.push((
            "[Content_Types].xml".into(),
            br#"<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#.to_vec(),
        ));
        let borrowed: Vec<(&str, &[u8])> = entries
            .iter()
            .map(|(name, data)| (name.as_str(), data.as_slice()))
            .collect();
        zip_of(&borrowed)
    }

    pub(crate) fn sheet_xml(rows: &[Vec<String>]) -> String {
        let mut xml = String::from(
            r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>"#,
        );
        for (r, row) in rows.iter().enumerate() {
            xml.push_str(&format!(r#"<row r="{}">"#, r + 1));
            for (c, value) in row.iter().enumerate() {
                let cell = format!("{}{}", (b'A' + c as u8) as char, r + 1);
                if value.parse::<f64>().is_ok() {
                    xml.push_str(&format!(r#"<c r="{cell}"><v>{value}</v></c>"#));
                } else {
                    xml.push_str(&format!(
                        r#"<c r="{cell}" t="inlineStr"><is><t>{value}</t></is></c>"#
                    ));
                }
            }
            xml.push_str("</row>");
        }
        xml.push_str("</sheetData></worksheet>");
        xml
    }

    fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn each_sheet_is_a_named_table() {
        let bytes = xlsx_of(&[
            (
                "Budget",
                rows(&[&["item", "cost"], &["tea", "3.5"], &["cups", "12"]]),
            ),
            ("Staff", rows(&[&["name"], &["Ada"]])),
        ]);
        let parts = workbook_to_parts(&bytes, Workbook::Xlsx).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].location, ChunkLocation::sheet("Budget"));
        assert!(parts[0].table);
        assert_eq!(parts[0].text, "item | cost\ntea | 3.5\ncups | 12\n");
        assert_eq!(parts[1].location, ChunkLocation::sheet("Staff"));
        assert_eq!(parts[1].text, "name\nAda\n");
    }

    #[test]
    fn a_sheet_past_the_row_limit_is_refused() {
        let many: Vec<Vec<String>> = (0..MAX_TABLE_ROWS + 1)
            .map(|i| vec![i.to_string()])
            .collect();
        let bytes = xlsx_of(&[("Big", many)]);
        assert!(matches!(
            workbook_to_parts(&bytes, Workbook::Xlsx),
            Err(ParseError::TooComplex(_))
        ));
    }

    #[test]
    fn delimited_text_is_one_table() {
        let parts = delimited_to_parts(
            b"\xef\xbb\xbfcity,days\nLisbon,3\n\"Porto, north\",2\n",
            b',',
        )
        .unwrap();
        assert_eq!(parts[0].text, "city | days\nLisbon | 3\nPorto, north | 2\n");
        let parts = delimited_to_parts(b"a\tb\n1\t2\n", b'\t').unwrap();
        assert_eq!(parts[0].text, "a | b\n1 | 2\n");
        let wide = vec!["x"; MAX_TABLE_COLUMNS + 1].join(",");
        assert!(matches!(
            delimited_to_parts(wide.as_bytes(), b','),
            Err(ParseError::TooComplex(_))
        ));
    }
}
