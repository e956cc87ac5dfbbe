//! How pflag's `StringSlice` flags (`--ports`, `--copy-files`,
//! `--ignore-preflight-checks`) split a value: `readAsCSV`, i.e. the first
//! record of Go 1.16's `encoding/csv` reader with default settings. Empty
//! fields are kept (`a,,b` is three values), quotes group commas
//! (`"a,b"` is one value), and malformed quotes fail with
//! `csv.ParseError`'s text.

/// Go's `csv.ErrBareQuote`.
const BARE_QUOTE: &str = "bare \" in non-quoted-field";
/// Go's `csv.ErrQuote`.
const QUOTE: &str = "extraneous or missing \" in quoted-field";

/// pflag `readAsCSV(value)`: the values of one `StringSlice` flag
/// occurrence, or the error pflag reports after `invalid argument …: `.
pub fn split(value: &str) -> Result<Vec<String>, String> {
    if value.is_empty() {
        return Ok(Vec::new());
    }
    Reader::new(value.as_bytes()).read_record()
}

/// A line reader over the input with Go's line counting.
struct Reader<'a> {
    /// Unread input.
    rest: &'a [u8],
    /// Lines read so far (`numLine`).
    line_number: usize,
}

/// A `csv.ParseError`, rendered.
fn parse_error(start_line: usize, line: usize, column: usize, why: &str) -> String {
    if start_line != line {
        format!("record on line {start_line}; parse error on line {line}, column {column}: {why}")
    } else {
        format!("parse error on line {line}, column {column}: {why}")
    }
}

/// Number of characters (runes) in `bytes`, as `utf8.RuneCount`.
fn rune_count(bytes: &[u8]) -> usize {
    String::from_utf8_lossy(bytes).chars().count()
}

/// 1 when `line` ends in a newline (`lengthNL`).
fn newline_length(line: &[u8]) -> usize {
    usize::from(line.last() == Some(&b'\n'))
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    fn new(input: &'a [u8]) -> Reader<'a> {
        Reader {
            rest: input,
            line_number: 0,
        }
    }

    /// `readLine`: the next line including its `\n` (with `\r\n` turned
    /// into `\n`, a final `\r` dropped), or `None` at end of input.
    fn read_line(&mut self) -> Option<Vec<u8>> {
        self.line_number += 1;
        if self.rest.is_empty() {
            return None;
        }
        let end = self
            .rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(self.rest.len(), |i| i + 1);
        let mut line = self.rest[..end].to_vec();
        self.rest = &self.rest[end..];
        if line.last() != Some(&b'\n') && line.last() == Some(&b'\r') {
            line.pop();
        }
        let n = line.len();
        if n >= 2 && line[n - 2] == b'\r' && line[n - 1] == b'\n' {
            line.truncate(n - 2);
            line.push(b'\n');
        }
        Some(line)
    }

    /// `readRecord` for the first record.
    fn read_record(&mut self) -> Result<Vec<String>, String> {
        let full_line = loop {
            match self.read_line() {
                None => return Err("EOF".to_string()),
                Some(line) if line.len() == newline_length(&line) => continue,
                Some(line) => break line,
            }
        };
        let record_line = self.line_number;
        let mut full_line = full_line;
        let mut line: &[u8] = &full_line.clone();
        let mut fields = Vec::new();
        let mut owned;
        loop {
            if line.first() != Some(&b'"') {
                let comma = line.iter().position(|&b| b == b',');
                let field = match comma {
                    Some(i) => &line[..i],
                    None => &line[..line.len() - newline_length(line)],
                };
                if let Some(j) = field.iter().position(|&b| b == b'"') {
                    let consumed = full_line.len() - (line.len() - j);
                    return Err(parse_error(
                        record_line,
                        self.line_number,
                        rune_count(&full_line[..consumed]),
                        BARE_QUOTE,
                    ));
                }
                fields.push(String::from_utf8_lossy(field).into_owned());
                match comma {
                    Some(i) => line = &line[i + 1..],
                    None => return Ok(fields),
                }
                continue;
            }
            let mut field = Vec::new();
            line = &line[1..];
            loop {
                if let Some(i) = line.iter().position(|&b| b == b'"') {
                    field.extend_from_slice(&line[..i]);
                    line = &line[i + 1..];
                    match line.first() {
                        Some(b'"') => {
                            field.push(b'"');
                            line = &line[1..];
                        }
                        Some(b',') => {
                            line = &line[1..];
                            fields.push(String::from_utf8_lossy(&field).into_owned());
                            break;
                        }
                        _ if newline_length(line) == line.len() => {
                            fields.push(String::from_utf8_lossy(&field).into_owned());
                            return Ok(fields);
                        }
                        _ => {
                            let consumed = full_line.len() - line.len() - 1;
                            return Err(parse_error(
                                record_line,
                                self.line_number,
                                rune_count(&full_line[..consumed]),
                                QUOTE,
                            ));
                        }
                    }
                } else if !line.is_empty() {
                    field.extend_from_slice(line);
                    full_line = self.read_line().unwrap_or_default();
                    owned = full_line.clone();
                    line = &owned;
                } else {
                    return Err(parse_error(
                        record_line,
                        self.line_number,
                        rune_count(&full_line),
                        QUOTE,
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_pflag_string_slices() {
        assert_eq!(split(""), Ok(vec![]));
        assert_eq!(split("a,b"), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(
            split("a,,b,"),
            Ok(vec!["a".into(), "".into(), "b".into(), "".into()])
        );
        assert_eq!(split("\"a,b\",c"), Ok(vec!["a,b".into(), "c".into()]));
        assert_eq!(split("\"a\"\"b\""), Ok(vec!["a\"b".into()]));
        assert_eq!(split(" a , b"), Ok(vec![" a ".into(), " b".into()]));
        assert_eq!(split("a\nb"), Ok(vec!["a".into()]));
        assert_eq!(split("\n"), Err("EOF".into()));
    }

    #[test]
    fn reports_go_1_16_parse_errors() {
        assert_eq!(
            split("a \"word\",\"b\""),
            Err("parse error on line 1, column 2: bare \" in non-quoted-field".into())
        );
        assert_eq!(
            split("\"a word\",b\""),
            Err("parse error on line 1, column 10: bare \" in non-quoted-field".into())
        );
        assert_eq!(
            split("\"a \"word\",\"b\""),
            Err("parse error on line 1, column 3: extraneous or missing \" in quoted-field".into())
        );
        assert_eq!(
            split("\"\"\"\"\"\"\""),
            Err("parse error on line 1, column 7: extraneous or missing \" in quoted-field".into())
        );
        assert_eq!(
            split("a,\"b\nc\"d,e"),
            Err(
                "record on line 1; parse error on line 2, column 1: extraneous or missing \" in quoted-field"
                    .into()
            )
        );
        assert_eq!(split("\"x\ny\""), Ok(vec!["x\ny".into()]));
    }
}
