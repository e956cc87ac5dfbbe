//! Reading the table `ignite ps -a` prints.
//!
//! Ignite writes it with Go's `text/tabwriter` (tab width 8, padding 1,
//! padded with tabs; `cmd/ignite/run/ps.go`, `pkg/util/output.go`), so cells
//! are aligned on tab stops and an empty cell is just more tabs. Splitting on
//! tabs would lose empty cells (a stopped VM has no IPS); instead both the
//! header and the rows are expanded to 8-column tab stops, and each cell is
//! cut at the column where its header starts.

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsRow {
    /// The VM's 16-hex id.
    pub id: String,
    /// `Up …`, `Stopped`, or either prefixed with `*`.
    pub status: String,
    /// Its addresses.
    pub ips: Vec<String>,
    /// Its name.
    pub name: String,
}

impl PsRow {
    /// Whether the VM runs.
    pub fn running(&self) -> bool {
        self.status.starts_with("Up ")
    }
}

fn expand_tabs(line: &str) -> String {
    let mut out = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if c == '\t' {
            let spaces = 8 - out.chars().count() % 8;
            out.extend(std::iter::repeat_n(' ', spaces));
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the output of `ignite ps -a`. Returns an error if the header is
/// not ignite's.
pub fn parse_ps(output: &str) -> Result<Vec<PsRow>, String> {
    let mut lines = output.lines().filter(|line| !line.trim().is_empty());
    let raw_header = lines
        .next()
        .ok_or_else(|| "ignite ps printed nothing".to_string())?;
    // Where each header cell starts once tabs are expanded: every column
    // boundary, including the columns the driver does not read.
    let mut starts = Vec::new();
    let mut position = 0;
    for cell in raw_header.split('\t') {
        if !cell.is_empty() {
            starts.push((cell.to_string(), position));
        }
        position += cell.chars().count();
        position += 8 - position % 8;
    }
    let column = |title: &str| {
        starts
            .iter()
            .find(|(name, _)| name == title)
            .map(|(_, at)| *at)
            .ok_or_else(|| format!("ignite ps header has no {title} column: {raw_header:?}"))
    };
    let id_at = column("VM ID")?;
    let status_at = column("STATUS")?;
    let ips_at = column("IPS")?;
    let name_at = column("NAME")?;
    let cell = |row: &str, at: usize| -> String {
        let end = starts
            .iter()
            .map(|(_, s)| *s)
            .find(|&s| s > at)
            .unwrap_or(usize::MAX);
        let chars: Vec<char> = row.chars().collect();
        let end = end.min(chars.len());
        if at >= end {
            return String::new();
        }
        chars[at..end].iter().collect::<String>().trim().to_string()
    };
    let mut rows = Vec::new();
    for line in lines {
        // Ignite logs a warning after the table when a status is marked `*`.
        if line.contains("level=") || line.starts_with("WARN") {
            continue;
        }
        let row = expand_tabs(line);
        rows.push(PsRow {
            id: cell(&row, id_at),
            status: cell(&row, status_at),
            ips: cell(&row, ips_at)
                .split(", ")
                .filter(|ip| !ip.is_empty())
                .map(str::to_string)
                .collect(),
            name: cell(&row, name_at),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_golden_table_of_ignite_is_read() {
        // cmd/ignite/run/testdata/output/ps-table.txt
        let golden = "VM ID\t\t\tIMAGE\t\tKERNEL\t\tSIZE\tCPUS\tMEMORY\tCREATED\tSTATUS\tIPS\tPORTS\tNAME\n\
                      20e1d566ce318ada\tfoo/bar:latest\tfoo/bar:latest\t0 B\t0\t0 B\t21y ago\tStopped\t\t\tvm1\n";
        let rows = parse_ps(golden).unwrap();
        assert_eq!(
            rows,
            vec![PsRow {
                id: "20e1d566ce318ada".into(),
                status: "Stopped".into(),
                ips: vec![],
                name: "vm1".into(),
            }]
        );
        assert!(!rows[0].running());
    }

    #[test]
    fn running_vms_with_addresses_and_empty_cells_are_read() {
        // As printed by the ignite stand-in (tests/fake-ignite), which
        // reproduces ignite's tabwriter layout.
        let table = "VM ID\t\t\tIMAGE\t\t\t\tKERNEL\t\t\t\t\tSIZE\tCPUS\tMEMORY\t\tCREATED\tSTATUS\tIPS\t\tPORTS\tNAME\n\
                     c03ba75275087b45\tweaveworks/ignite-ubuntu:latest\tweaveworks/ignite-kernel:5.10.51\t4.0 GB\t1\t512.0 MB\t0s ago\tUp 0s\t127.61.0.2\t\tuser-.user-.a-session\n\
                     48a7622b2797c4f3\tweaveworks/ignite-ubuntu:latest\tweaveworks/ignite-kernel:5.10.51\t4.0 GB\t1\t512.0 MB\t0s ago\tStopped\t\t\t\tother\n";
        let rows = parse_ps(table).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "user-.user-.a-session");
        assert_eq!(rows[0].ips, vec!["127.61.0.2".to_string()]);
        assert!(rows[0].running());
        assert_eq!(rows[1].name, "other");
        assert!(rows[1].ips.is_empty());
    }

    #[test]
    fn an_empty_table_and_a_foreign_one() {
        assert_eq!(
            parse_ps(
                "VM ID\tIMAGE\tKERNEL\tSIZE\tCPUS\tMEMORY\tCREATED\tSTATUS\tIPS\tPORTS\tNAME\n"
            )
            .unwrap(),
            vec![]
        );
        assert!(parse_ps("something else\n").is_err());
        assert!(parse_ps("").is_err());
    }
}
