//! Aligned plain-text tables, the way kubectl prints them: upper-case headers, columns two
//! spaces apart, numbers aligned right.

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A table being filled row by row.
#[derive(Clone, Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

/// What each line of a table starts with, so that tables stand out under their heading.
const INDENT: &str = "  ";

/// The space between two columns.
const GAP: &str = "  ";

impl Table {
    /// An empty table with these headers.
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are left blank and extra ones dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// The table as lines, each ending with a newline and none with trailing spaces.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let headers = self
            .columns
            .iter()
            .map(|(header, _)| header.to_string())
            .collect();
        let mut out = String::new();
        for cells in std::iter::once(&headers).chain(&self.rows) {
            let line = cells
                .iter()
                .zip(&self.columns)
                .zip(&widths)
                .map(|((cell, (_, align)), width)| pad(cell, *width, *align))
                .collect::<Vec<_>>()
                .join(GAP);
            out.push_str(INDENT);
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .map(|(h, _)| h.chars().count())
            .collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }
}

fn pad(cell: &str, width: usize, align: Align) -> String {
    match align {
        Align::Left => format!("{cell:<width$}"),
        Align::Right => format!("{cell:>width$}"),
    }
}

/// The text on one line, cut to at most `max` characters with `…` marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let kept: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_column_table() -> Table {
        let mut table = Table::new(&[("NAME", Align::Left), ("VMS", Align::Right)]);
        table.row(vec!["team-a".into(), "7".into()]);
        table.row(vec!["b".into(), "12".into()]);
        table
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_numbers_align_right() {
        let expected = "  NAME    VMS\n  team-a    7\n  b        12\n";
        assert_eq!(two_column_table().render(), expected);
    }

    #[test]
    fn a_blank_last_cell_leaves_no_trailing_spaces() {
        let mut table = Table::new(&[("A", Align::Left), ("B", Align::Left)]);
        table.row(vec!["long-value".into()]);
        assert_eq!(table.render(), "  A           B\n  long-value\n");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(truncate("powered off for 120 days", 10), "powered o…");
        assert_eq!(truncate("short", 10), "short");
    }

    #[test]
    fn text_is_kept_on_one_line() {
        assert_eq!(
            truncate("first line\nsecond   line", 40),
            "first line second line"
        );
    }

    #[test]
    fn cutting_counts_characters_not_bytes() {
        assert_eq!(truncate("ééééé", 3), "éé…");
    }
}
