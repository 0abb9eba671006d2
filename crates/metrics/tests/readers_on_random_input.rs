//! The readers of the run's files (CSV, TensorBoard event files) on random
//! and mutated input: a clean answer, never a panic.

use proptest::prelude::*;
use rl_metrics::csv::{cut_after, is_row, parse_table};
use rl_metrics::tensorboard::scalars_until_damage;

const HEADER: &str = "time_s,env_steps,updates";

/// A run's CSV text with some of its characters replaced.
fn mutated_csv() -> impl Strategy<Value = String> {
    let rows = prop::collection::vec((any::<f64>(), 0u64..1 << 40, 0u64..1000), 0..20);
    let edits = prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..6);
    (rows, edits).prop_map(|(rows, edits)| {
        let mut text = format!("{HEADER}\n");
        for (t, s, u) in rows {
            text += &format!("{t},{s},{u}\n");
        }
        let mut chars: Vec<char> = text.chars().collect();
        for (at, c) in edits {
            let i = at.index(chars.len());
            chars[i] = c;
        }
        chars.into_iter().collect()
    })
}

proptest! {
    #[test]
    fn csv_readers_answer_on_any_text(text in any::<String>(), mutated in mutated_csv(), max in any::<f64>()) {
        for t in [&text, &mutated] {
            let table = parse_table(t);
            for row in &table.rows {
                prop_assert_eq!(row.len(), table.header.len());
            }
            if let Ok((kept, _, _)) = cut_after(t, HEADER, "updates", max) {
                prop_assert!(kept.starts_with(HEADER));
                // What is kept reads back as rows of the header's width.
                prop_assert_eq!(parse_table(&kept).skipped, 0);
            }
            for line in t.lines() {
                let _ = is_row(line, 3);
            }
        }
    }

    #[test]
    fn event_files_read_up_to_damage_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (_, _) = scalars_until_damage(&bytes);
    }
}

#[test]
fn a_valid_event_file_with_damage_reads_up_to_it() {
    let dir = std::env::temp_dir().join(format!("rl-tb-damage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_default();
    let mut w = rl_metrics::tensorboard::EventWriter::create(&dir, "t.train", 1.0)
        .unwrap_or_else(|e| panic!("{e}"));
    for step in 0..10 {
        w.scalars(step, 1.0, &[("train/x", step as f64)])
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let path = w.path().to_path_buf();
    drop(w);
    let bytes = std::fs::read(&path).unwrap_or_default();
    for cut in [bytes.len() - 3, bytes.len() / 2, 10] {
        let (scalars, damage) = scalars_until_damage(&bytes[..cut]);
        assert!(damage.is_some(), "cut at {cut}");
        assert!(scalars.len() < 10);
        assert!(scalars.iter().enumerate().all(|(i, s)| s.0 == i as i64));
    }
    let (scalars, damage) = scalars_until_damage(&bytes);
    assert_eq!((scalars.len(), damage), (10, None));
    let _ = std::fs::remove_dir_all(&dir);
}
