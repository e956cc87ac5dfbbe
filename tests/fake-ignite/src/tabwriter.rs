//! Go's `text/tabwriter` as ignite configures it in `pkg/util/output.go`:
//! `Init(os.Stdout, 0, 8, 1, '\t', 0)` — minimum width 0, tab width 8,
//! padding 1, padding with tab characters, no flags.

/// Tab width ignite passes to the writer.
const TAB_WIDTH: usize = 8;
/// Padding ignite passes to the writer.
const PADDING: usize = 1;

/// Aligns `rows` (each a list of cells; every cell but the last of a row is
/// tab-terminated) the way the Go writer does. All rows must have the same
/// number of cells, which is how ignite always writes them; one column block
/// spans the whole table.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; columns.saturating_sub(1)];
    for row in rows {
        for (column, cell) in row.iter().enumerate().take(widths.len()) {
            widths[column] = widths[column].max(cell.chars().count() + PADDING);
        }
    }
    let mut out = String::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if let Some(&width) = widths.get(column) {
                // writePadding: round the cell width up to a tab stop and fill
                // the gap with as many tabs as it takes.
                let cell_width = width.div_ceil(TAB_WIDTH) * TAB_WIDTH;
                let gap = cell_width - cell.chars().count();
                out.push_str(&"\t".repeat(gap.div_ceil(TAB_WIDTH)));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::render;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn reproduces_ignites_ps_golden_file() {
        // cmd/ignite/run/testdata/output/ps-table.txt (weaveworks/ignite).
        let header = row(&[
            "VM ID", "IMAGE", "KERNEL", "SIZE", "CPUS", "MEMORY", "CREATED", "STATUS", "IPS",
            "PORTS", "NAME",
        ]);
        let vm = |id: &str, name: &str| {
            row(&[
                id,
                "foo/bar:latest",
                "foo/bar:latest",
                "0 B",
                "0",
                "0 B",
                "21y ago",
                "Stopped",
                "",
                "",
                name,
            ])
        };
        let table = render(&[
            header,
            vm("20e1d566ce318ada", "vm1"),
            vm("bfc80c948b1e2419", "vm2"),
            vm("cddc37ba657766e3", "vm3"),
        ]);
        let golden = "VM ID\t\t\tIMAGE\t\tKERNEL\t\tSIZE\tCPUS\tMEMORY\tCREATED\tSTATUS\tIPS\tPORTS\tNAME\n\
20e1d566ce318ada\tfoo/bar:latest\tfoo/bar:latest\t0 B\t0\t0 B\t21y ago\tStopped\t\t\tvm1\n\
bfc80c948b1e2419\tfoo/bar:latest\tfoo/bar:latest\t0 B\t0\t0 B\t21y ago\tStopped\t\t\tvm2\n\
cddc37ba657766e3\tfoo/bar:latest\tfoo/bar:latest\t0 B\t0\t0 B\t21y ago\tStopped\t\t\tvm3\n";
        assert_eq!(table, golden);
    }

    #[test]
    fn header_alone_is_single_tabs() {
        let header = row(&["VM ID", "IMAGE", "NAME"]);
        assert_eq!(render(&[header]), "VM ID\tIMAGE\tNAME\n");
    }

    #[test]
    fn quiet_rows_keep_their_padding_tab() {
        let table = render(&[
            row(&["e0c7fa4b1a2d3c4f", ""]),
            row(&["0123456789abcdef", ""]),
        ]);
        assert_eq!(table, "e0c7fa4b1a2d3c4f\t\n0123456789abcdef\t\n");
    }
}
