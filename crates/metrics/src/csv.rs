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

/// Keeps the header and the complete rows whose `column` is at most
/// `max_value`, dropping later rows and any partial line: what resuming
/// from a checkpoint does to the curves, so that they continue without a
/// gap or a duplicate. Returns how many rows were dropped. The file is
/// replaced atomically.
pub fn truncate_after(path: &Path, column: &str, max_value: f64) -> io::Result<usize> {
    let text = std::fs::read_to_string(path)?;
    let mut lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
    let Some(header) = lines.next() else {
        return Ok(0);
    };
    let index = header
        .trim_end()
        .split(',')
        .position(|h| h == column)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no column {column}", path.display()),
            )
        })?;
    let mut kept = String::from(header);
    let mut dropped = 0;
    for line in lines {
        let value = line
            .trim_end()
            .split(',')
            .nth(index)
            .and_then(|v| v.parse::<f64>().ok());
        match value {
            Some(v) if v <= max_value => kept.push_str(line),
            _ => dropped += 1,
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, kept)?;
    std::fs::rename(&tmp, path)?;
    Ok(dropped)
}

#[cfg(test)]
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
    fn truncation_keeps_rows_up_to_a_value() {
        let dir = std::env::temp_dir().join(format!("rl-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_default();
        let path = dir.join("train.csv");
        std::fs::write(&path, "t,updates\n0.1,1\n0.2,2\n0.3,3\n0.4,4\n0.5,").unwrap_or_default();
        assert_eq!(truncate_after(&path, "updates", 2.0).ok(), Some(2));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap_or_default(),
            "t,updates\n0.1,1\n0.2,2\n"
        );
        assert!(truncate_after(&path, "missing", 1.0).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
