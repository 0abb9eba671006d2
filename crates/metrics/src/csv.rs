//! The run's CSV files (`train.csv`, `eval.csv`), read while they grow: only
//! complete lines count, so a row still being written is never half-read;
//! empty cells are missing values (NaN).

use std::io;
use std::path::Path;

/// A CSV file's header and its complete, numeric rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<f64>>,
    /// Complete lines that were not rows of numbers matching the header.
    pub skipped: usize,
    /// Bytes at the start of the file that were not read (see
    /// [`read_table_tail`]).
    pub unread_bytes: u64,
}

impl Table {
    /// The index of a column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// One column's values (NaN where missing); empty for an unknown column.
    pub fn values(&self, name: &str) -> Vec<f64> {
        match self.column(name) {
            Some(i) => self.rows.iter().map(|r| r[i]).collect(),
            None => Vec::new(),
        }
    }
}

/// Parses CSV text written by a run; a last line without its newline is
/// still being written and is left out.
pub fn parse_table(text: &str) -> Table {
    let mut lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    let Some(header) = lines.next() else {
        return Table::default();
    };
    let header: Vec<String> = header.trim_end().split(',').map(str::to_string).collect();
    let mut table = Table {
        header,
        ..Table::default()
    };
    for line in lines {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let parsed: Option<Vec<f64>> = cells
            .iter()
            .map(|c| {
                if c.is_empty() {
                    Some(f64::NAN)
                } else {
                    c.parse().ok()
                }
            })
            .collect();
        match parsed {
            Some(row) if row.len() == table.header.len() => table.rows.push(row),
            _ => table.skipped += 1,
        }
    }
    table
}

/// Reads a run's CSV file (see [`parse_table`]).
pub fn read_table(path: &Path) -> io::Result<Table> {
    Ok(parse_table(&std::fs::read_to_string(path)?))
}

/// Reads the header and at most the last `max_bytes` of a run's CSV file:
/// the newest rows of a file of any size, in bounded time and memory.
/// `unread_bytes` says how much of the file's start was left out.
pub fn read_table_tail(path: &Path, max_bytes: u64) -> io::Result<Table> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len <= max_bytes {
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        return Ok(parse_table(&text));
    }
    // The header: the first line, if it is of a sane length.
    let mut head = Vec::new();
    (&mut file).take(64 * 1024).read_to_end(&mut head)?;
    let Some(end) = head.iter().position(|b| *b == b'\n') else {
        return Ok(Table::default());
    };
    let header = String::from_utf8_lossy(&head[..=end]).into_owned();
    let start = len - max_bytes;
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(max_bytes).read_to_end(&mut tail)?;
    // The first line of the tail is most likely cut: it starts after it.
    let from = tail
        .iter()
        .position(|b| *b == b'\n')
        .map_or(tail.len(), |i| i + 1);
    let mut table = parse_table(&(header + &String::from_utf8_lossy(&tail[from..])));
    table.unread_bytes = start + from as u64;
    Ok(table)
}

/// Keeps the header and the complete rows whose `column` is at most
/// `max_value`, dropping later rows, unreadable lines and any partial last
/// line: what resuming from a checkpoint does to the curves, so that they
/// continue without a gap or a duplicate. Returns the text to write back
/// and how many rows were dropped (after the value, unreadable). The header
/// must be `header`.
pub fn cut_after(
    text: &str,
    header: &str,
    column: &str,
    max_value: f64,
) -> Result<(String, usize, usize), String> {
    let mut lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != header {
        return Err(format!(
            "its first line is not the header {header:?} (found {:?})",
            first.trim_end().chars().take(120).collect::<String>()
        ));
    }
    let index = header
        .split(',')
        .position(|h| h == column)
        .ok_or_else(|| format!("no column {column}"))?;
    let width = header.split(',').count();
    let mut kept = String::from(first);
    let (mut later, mut unreadable) = (0, 0);
    for line in lines {
        let cells: Vec<&str> = line.trim_end().split(',').collect();
        let numeric = cells.len() == width
            && cells
                .iter()
                .all(|c| c.is_empty() || c.parse::<f64>().is_ok());
        match cells.get(index).and_then(|v| v.parse::<f64>().ok()) {
            Some(v) if numeric && v <= max_value => kept.push_str(line),
            Some(_) if numeric => later += 1,
            _ => unreadable += 1,
        }
    }
    Ok((kept, later, unreadable))
}

/// Whether `line` is a row of `width` numbers (or empty cells): what a run
/// writes after its header.
pub fn is_row(line: &str, width: usize) -> bool {
    let cells: Vec<&str> = line.trim_end().split(',').collect();
    cells.len() == width
        && cells.iter().any(|c| !c.is_empty())
        && cells
            .iter()
            .all(|c| c.is_empty() || c.parse::<f64>().is_ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_lines_and_bad_rows_are_not_rows() {
        let t = parse_table("a,b\n1,2\n3,\nx,4\n5,6,7\n8,9");
        assert_eq!(t.header, ["a", "b"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0], [1.0, 2.0]);
        assert!(t.rows[1][1].is_nan());
        assert_eq!(t.skipped, 2);
        assert_eq!(t.values("a"), [1.0, 3.0]);
        assert!(t.values("zzz").is_empty());
        assert_eq!(
            parse_table("a,b"),
            Table::default(),
            "header not complete yet"
        );
    }

    #[test]
    fn cutting_keeps_rows_up_to_a_value_and_names_a_wrong_header() {
        let text = "t,updates\n0.1,1\n0.2,2\ngarbage\n0.3,3\n0.4,4\n0.5,";
        let (kept, later, unreadable) = cut_after(text, "t,updates", "updates", 2.0).unwrap();
        assert_eq!(kept, "t,updates\n0.1,1\n0.2,2\n");
        assert_eq!((later, unreadable), (2, 1));
        let err = cut_after("0.1,1\n", "t,updates", "updates", 2.0).unwrap_err();
        assert!(err.contains("not the header"), "{err}");
        assert!(cut_after(text, "t,updates", "missing", 1.0).is_err());
        assert!(is_row("0.1,1\n", 2) && is_row("0.1,\n", 2));
        assert!(!is_row("t,updates\n", 2) && !is_row(",\n", 2) && !is_row("1,2,3\n", 2));
    }

    #[test]
    fn the_tail_of_a_large_file_is_read_with_its_header() {
        let dir = std::env::temp_dir().join(format!("rl-csv-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("train.csv");
        let mut text = String::from("a,b\n");
        for i in 0..1000 {
            text += &format!("{i},{}\n", i * 2);
        }
        std::fs::write(&path, &text).unwrap();
        let whole = read_table_tail(&path, 1 << 20).unwrap();
        assert_eq!((whole.rows.len(), whole.unread_bytes), (1000, 0));
        let tail = read_table_tail(&path, 100).unwrap();
        assert_eq!(tail.header, ["a", "b"]);
        assert!(
            !tail.rows.is_empty() && tail.rows.len() < 20,
            "{}",
            tail.rows.len()
        );
        assert_eq!(tail.rows.last().unwrap(), &[999.0, 1998.0]);
        assert_eq!(tail.skipped, 0, "the cut line is not read as a row");
        assert!(tail.unread_bytes > text.len() as u64 - 100);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
